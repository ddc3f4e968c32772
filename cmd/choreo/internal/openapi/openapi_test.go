package openapi

import (
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"

	"github.com/choreo-dev/choreo/cmd/choreo/internal/openapi/openapitest"
	"github.com/choreo-dev/choreo/events/catalog"
)

func allPatterns(t *testing.T) []string {
	t.Helper()
	ops, err := Operations()
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, op := range ops {
		patterns = append(patterns, op.Pattern)
	}
	return patterns
}

// TestDocumentIsValidOpenAPI checks the served document against the
// OpenAPI 3.1 specification's schema, and that every reference in it
// resolves.
func TestDocumentIsValidOpenAPI(t *testing.T) {
	b, err := Document(allPatterns(t))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := libopenapi.NewDocument(b)
	if err != nil {
		t.Fatal(err)
	}
	if v := doc.GetVersion(); v != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", v)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("building the model: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		t.Errorf("not a valid OpenAPI document:%s", openapitest.Errors(verrs))
	}
	if strings.Contains(string(b), catalogDir) {
		t.Errorf("the served document still refers to catalog files")
	}
}

// TestCatalogSchemasAreTheCatalogs checks that what the document says of
// the shapes it shares with commands and events is the catalog's JSON
// Schemas, not a copy that could drift.
func TestCatalogSchemasAreTheCatalogs(t *testing.T) {
	doc, err := Bundled()
	if err != nil {
		t.Fatal(err)
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	var shared int
	for name, got := range schemas {
		raw, err := catalog.SchemaJSON(name)
		if err != nil {
			continue // the document's own
		}
		shared++
		var want map[string]any
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		delete(want, "$schema")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("components/schemas/%s differs from the catalog's schema", name)
		}
	}
	if shared == 0 {
		t.Fatal("no catalog schema in the document")
	}
}

// TestRequestBodiesFollowTheirCommands checks that an HTTP body takes
// every field of the command it stands for, each with the catalog's
// schema, and requires what the command requires except what the route
// fills in itself.
func TestRequestBodiesFollowTheirCommands(t *testing.T) {
	doc, err := Bundled()
	if err != nil {
		t.Fatal(err)
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	for _, tt := range []struct {
		body, command, filledIn string
	}{
		{"PlaceOrderRequest", "orders.place", "order_id"},
		{"RestockRequest", "inventory.restock", "sku"},
	} {
		body := schemas[tt.body].(map[string]any)
		command := schemas[tt.command].(map[string]any)
		var props []string
		for name, p := range body["properties"].(map[string]any) {
			props = append(props, name)
			want := "#/components/schemas/" + tt.command + "/properties/" + name
			if ref := p.(map[string]any)["$ref"]; ref != want {
				t.Errorf("%s.%s is %v, want $ref %s", tt.body, name, p, want)
			}
		}
		var commandProps []string
		for name := range command["properties"].(map[string]any) {
			commandProps = append(commandProps, name)
		}
		sort.Strings(props)
		sort.Strings(commandProps)
		if !slices.Equal(props, commandProps) {
			t.Errorf("%s has fields %v, %s %v", tt.body, props, tt.command, commandProps)
		}
		var want []string
		for _, r := range command["required"].([]any) {
			if r != tt.filledIn {
				want = append(want, r.(string))
			}
		}
		var got []string
		for _, r := range body["required"].([]any) {
			got = append(got, r.(string))
		}
		sort.Strings(want)
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s requires %v, want %v (%s's, less %s)", tt.body, got, want, tt.command, tt.filledIn)
		}
		if body["additionalProperties"] != command["additionalProperties"] {
			t.Errorf("%s: additionalProperties %v, %s has %v", tt.body, body["additionalProperties"], tt.command, command["additionalProperties"])
		}
	}
}

// TestDocumentDescribesOnlyTheServedRoutes checks that a process serving
// some routes describes those and no others.
func TestDocumentDescribesOnlyTheServedRoutes(t *testing.T) {
	b, err := Document([]string{"GET /healthz", "POST /orders", "GET /undescribed"})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	for path, item := range doc.Paths {
		for op := range item {
			got = append(got, op+" "+path)
		}
	}
	sort.Strings(got)
	if want := []string{"get /healthz", "post /orders"}; !slices.Equal(got, want) {
		t.Errorf("described %v, want %v", got, want)
	}
	undescribed, unserved, err := Compare([]string{"GET /healthz", "POST /orders", "GET /undescribed"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"GET /undescribed"}; !slices.Equal(undescribed, want) {
		t.Errorf("undescribed %v, want %v", undescribed, want)
	}
	if !slices.Contains(unserved, "GET /orders/{id}") || slices.Contains(unserved, "POST /orders") {
		t.Errorf("unserved %v, want GET /orders/{id} among them and POST /orders not", unserved)
	}
}
