// Package openapi holds the OpenAPI 3.1 description of choreo's HTTP API
// (openapi.json beside this file) and bundles it into the document a choreo
// process serves at /openapi.json.
//
// openapi.json refers to the event catalog's JSON Schemas where they live
// (events/catalog/schemas, by relative path) rather than copying them, so
// that an HTTP body and the command it stands for cannot drift apart and
// any OpenAPI tool reading the repository resolves them. A served document
// must stand alone, so Document bundles it: each catalog schema referred to
// is put under components/schemas, named after its catalog type, as
// catalog.SchemaJSON has it, and the references point there.
package openapi

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/choreo-dev/choreo/events/catalog"
)

//go:embed openapi.json
var source []byte

// catalogDir is how openapi.json refers to the catalog's schema files.
const catalogDir = "../../../../events/catalog/schemas/"

// methods are the operations of an OpenAPI path item, by HTTP method.
var methods = map[string]string{
	http.MethodGet: "get", http.MethodPut: "put", http.MethodPost: "post", http.MethodDelete: "delete",
	http.MethodOptions: "options", http.MethodHead: "head", http.MethodPatch: "patch", http.MethodTrace: "trace",
}

// Bundled returns the whole description with the catalog's schemas bundled
// in, as a JSON tree.
func Bundled() (map[string]any, error) {
	var doc map[string]any
	if err := json.Unmarshal(source, &doc); err != nil {
		return nil, fmt.Errorf("openapi: openapi.json: %w", err)
	}
	used := map[string]bool{}
	if err := rewriteRefs(doc, used); err != nil {
		return nil, err
	}
	components, _ := doc["components"].(map[string]any)
	schemas, _ := components["schemas"].(map[string]any)
	if schemas == nil {
		return nil, fmt.Errorf("openapi: openapi.json has no components/schemas")
	}
	for name := range used {
		if _, taken := schemas[name]; taken {
			return nil, fmt.Errorf("openapi: components/schemas/%s is the name of a catalog schema", name)
		}
		raw, err := catalog.SchemaJSON(name)
		if err != nil {
			return nil, fmt.Errorf("openapi: %w", err)
		}
		var schema map[string]any
		if err := json.Unmarshal(raw, &schema); err != nil {
			return nil, fmt.Errorf("openapi: catalog schema %s: %w", name, err)
		}
		// The document's dialect is JSON Schema 2020-12 already; the
		// catalog's $id stays, naming where the schema comes from.
		delete(schema, "$schema")
		schemas[name] = schema
	}
	return doc, nil
}

// rewriteRefs points every reference to a catalog file at the schema's
// place under components/schemas and notes the schemas referred to.
func rewriteRefs(node any, used map[string]bool) error {
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			ref, isRef := v.(string)
			if k != "$ref" || !isRef || strings.HasPrefix(ref, "#") {
				if err := rewriteRefs(v, used); err != nil {
					return err
				}
				continue
			}
			file, pointer, _ := strings.Cut(ref, "#")
			name, ok := strings.CutPrefix(file, catalogDir)
			name, isJSON := strings.CutSuffix(name, ".json")
			if !ok || !isJSON || strings.Contains(name, "/") {
				return fmt.Errorf("openapi: reference %q is neither local nor to a catalog schema", ref)
			}
			used[name] = true
			n[k] = "#/components/schemas/" + name + pointer
		}
	case []any:
		for _, v := range n {
			if err := rewriteRefs(v, used); err != nil {
				return err
			}
		}
	}
	return nil
}

// Document returns the bundled description of the routes given as
// http.ServeMux patterns ("GET /orders/{id}"): the operations no pattern
// names are left out, so that a process describes what it serves and
// nothing more. A pattern the description lacks is simply not described;
// Compare tells.
func Document(patterns []string) ([]byte, error) {
	doc, err := Bundled()
	if err != nil {
		return nil, err
	}
	served := map[string]bool{}
	for _, p := range patterns {
		served[p] = true
	}
	paths, _ := doc["paths"].(map[string]any)
	for path, v := range paths {
		item, _ := v.(map[string]any)
		for method, op := range methods {
			if _, ok := item[op]; ok && !served[method+" "+path] {
				delete(item, op)
			}
		}
		if !hasOperation(item) {
			delete(paths, path)
		}
	}
	return json.MarshalIndent(doc, "", "  ")
}

func hasOperation(item map[string]any) bool {
	for _, op := range methods {
		if _, ok := item[op]; ok {
			return true
		}
	}
	return false
}

// Operation is one operation of the description.
type Operation struct {
	// Pattern is the operation as an http.ServeMux pattern: "GET /orders/{id}".
	Pattern string
	Tags    []string
	// Scopes are the scopes of its bearer security requirement; Secured
	// is false for an operation open to anyone.
	Scopes  []string
	Secured bool
}

// Operations lists every operation of the description, sorted by pattern.
func Operations() ([]Operation, error) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(source, &doc); err != nil {
		return nil, fmt.Errorf("openapi: openapi.json: %w", err)
	}
	var ops []Operation
	for path, item := range doc.Paths {
		for method, op := range methods {
			raw, ok := item[op]
			if !ok {
				continue
			}
			var o struct {
				Tags     []string              `json:"tags"`
				Security []map[string][]string `json:"security"`
			}
			if err := json.Unmarshal(raw, &o); err != nil {
				return nil, fmt.Errorf("openapi: %s %s: %w", method, path, err)
			}
			operation := Operation{Pattern: method + " " + path, Tags: o.Tags}
			for _, req := range o.Security {
				if scopes, ok := req["bearer"]; ok {
					operation.Secured = true
					operation.Scopes = append(operation.Scopes, scopes...)
				}
			}
			ops = append(ops, operation)
		}
	}
	slices.SortFunc(ops, func(a, b Operation) int { return strings.Compare(a.Pattern, b.Pattern) })
	return ops, nil
}

// Compare returns the patterns served but not described and the
// operations described but not served, each sorted.
func Compare(patterns []string) (undescribed, unserved []string, err error) {
	ops, err := Operations()
	if err != nil {
		return nil, nil, err
	}
	described := map[string]bool{}
	for _, op := range ops {
		described[op.Pattern] = true
	}
	served := map[string]bool{}
	for _, p := range patterns {
		served[p] = true
		if !described[p] {
			undescribed = append(undescribed, p)
		}
	}
	for _, op := range ops {
		if !served[op.Pattern] {
			unserved = append(unserved, op.Pattern)
		}
	}
	slices.Sort(undescribed)
	return undescribed, unserved, nil
}
