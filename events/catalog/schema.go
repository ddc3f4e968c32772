package catalog

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"path"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaFS holds the JSON Schema (draft 2020-12) of every command's body
// and every event's data, one file per type named after its short name
// ("orders.place.json", "orders.placed.json"). They are part of the binary.
//
//go:embed schemas/*.json
var schemaFS embed.FS

// schemaBaseURL is the $id prefix of the embedded schemas. Nothing is
// fetched from it: every schema is loaded from schemaFS.
const schemaBaseURL = "https://choreo.dev/schemas/"

// schemaID is the $id of the schema of the type with short name name.
func schemaID(name string) string { return schemaBaseURL + name + ".json" }

// maxSchemaProblems bounds how many schema violations one error lists, so
// that a dead letter's reason stays short.
const maxSchemaProblems = 5

var (
	compileOnce sync.Once
	compiled    map[string]*jsonschema.Schema // short name → schema
	compileErr  error
)

// compileSchemas compiles every embedded schema once; validation on the
// hot path only looks the compiled schema up.
func compileSchemas() (map[string]*jsonschema.Schema, error) {
	compileOnce.Do(func() {
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		c.AssertFormat()
		// Never reach out to the network for a $ref.
		c.UseLoader(noLoader{})
		entries, err := schemaFS.ReadDir("schemas")
		if err != nil {
			compileErr = err
			return
		}
		var names []string
		for _, e := range entries {
			b, err := schemaFS.ReadFile(path.Join("schemas", e.Name()))
			if err != nil {
				compileErr = err
				return
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				compileErr = fmt.Errorf("schema %s: %w", e.Name(), err)
				return
			}
			if err := c.AddResource(schemaID(strings.TrimSuffix(e.Name(), ".json")), doc); err != nil {
				compileErr = fmt.Errorf("schema %s: %w", e.Name(), err)
				return
			}
			names = append(names, strings.TrimSuffix(e.Name(), ".json"))
		}
		out := map[string]*jsonschema.Schema{}
		for _, n := range names {
			s, err := c.Compile(schemaID(n))
			if err != nil {
				compileErr = fmt.Errorf("schema %s: %w", n, err)
				return
			}
			out[n] = s
		}
		compiled = out
	})
	return compiled, compileErr
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema %s is not embedded", url)
}

// SchemaJSON returns the JSON Schema of the type with the given short
// name ("orders.place", "orders.placed"), as embedded in the binary.
func SchemaJSON(name string) ([]byte, error) {
	b, err := schemaFS.ReadFile("schemas/" + name + ".json")
	if err != nil {
		return nil, fmt.Errorf("no schema for %q", name)
	}
	return b, nil
}

// errMalformed is wrapped by ValidateSchema's error for data that is not
// JSON at all.
var errMalformed = errors.New("malformed data")

// ValidateSchema checks data (a command's body or an event's data) against
// the schema of the type with the given short name. The error is one line:
// "schema: /items/0/quantity: minimum: got -2, want 1; …". Data that is not
// JSON at all is reported as malformed.
func ValidateSchema(name string, data []byte) error {
	schemas, err := compileSchemas()
	if err != nil {
		return err
	}
	s, ok := schemas[name]
	if !ok {
		return fmt.Errorf("schema: no schema for %q", name)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("schema: %w: %v", errMalformed, oneLine(err.Error()))
	}
	return schemaError(s.Validate(v))
}

// schemaError turns a validation error into one concise line listing the
// failing locations and keywords.
func schemaError(err error) error {
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("schema: %s", oneLine(err.Error()))
	}
	var problems []string
	seen := map[string]bool{}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		loc := "/" + strings.Join(e.InstanceLocation, "/")
		p := loc + ": " + oneLine(leafMessage(e))
		if !seen[p] {
			seen[p] = true
			problems = append(problems, p)
		}
	}
	walk(ve)
	sort.Strings(problems)
	if len(problems) > maxSchemaProblems {
		problems = append(problems[:maxSchemaProblems], fmt.Sprintf("and %d more", len(problems)-maxSchemaProblems))
	}
	return errors.New("schema: " + strings.Join(problems, "; "))
}

func leafMessage(e *jsonschema.ValidationError) string {
	out := e.BasicOutput()
	if out != nil && out.Error != nil {
		return out.Error.String()
	}
	for _, u := range out.Errors {
		if u.Error != nil {
			return u.Error.String()
		}
	}
	return fmt.Sprintf("%v", e.ErrorKind)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// schemaNames maps the Go type of every registered command and event to
// its short name, for the decoders' look-up on the hot path.
var schemaNames = func() map[reflect.Type]string {
	m := make(map[reflect.Type]string, len(registry))
	for _, ti := range registry {
		m[ti.goType] = ti.Name
	}
	return m
}()

// schemaNameOf returns the short name of the registered type whose Go type
// is t, or "" when none is registered.
func schemaNameOf(t reflect.Type) string { return schemaNames[t] }
