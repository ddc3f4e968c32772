package choreo_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// Statement of policy (PRODUCT.md "Layout", STYLE.md G2/G3):
//
//   - a service never imports another service: services share only events/;
//   - nothing under events/ imports a service;
//   - the events mechanics (everything under events/ except events/catalog)
//     do not import events/catalog, so another team can adopt events/ and
//     bring its own catalog;
//   - only cmd/ may import several services.
//
// The rules are data: each names the packages it governs and the import
// paths those packages must not use (directly, in code or in tests); the
// last one looks at a package's imports together (setRules).
const module = "github.com/choreo-dev/choreo"

var services = []string{"orders", "inventory", "payments", "notifications"}

type rule struct {
	name      string
	applies   func(pkg string) bool
	forbidden func(pkg, imp string) bool
}

func under(pkg, dir string) bool {
	p := module + "/" + dir
	return pkg == p || strings.HasPrefix(pkg, p+"/")
}

func serviceOf(pkg string) string {
	for _, s := range services {
		if under(pkg, s) {
			return s
		}
	}
	return ""
}

var rules = []rule{
	{
		name:    "a service imports another service",
		applies: func(pkg string) bool { return serviceOf(pkg) != "" },
		forbidden: func(pkg, imp string) bool {
			s := serviceOf(imp)
			return s != "" && s != serviceOf(pkg)
		},
	},
	{
		name:      "events/ imports a service",
		applies:   func(pkg string) bool { return under(pkg, "events") },
		forbidden: func(_, imp string) bool { return serviceOf(imp) != "" },
	},
	{
		name:      "the events mechanics import the catalog",
		applies:   func(pkg string) bool { return under(pkg, "events") && !under(pkg, "events/catalog") },
		forbidden: func(_, imp string) bool { return under(imp, "events/catalog") },
	},
}

// setRule governs a package's imports taken together: what no single
// import breaks, but several do.
type setRule struct {
	name string
	// violated returns the offending imports, none when the package is fine.
	violated func(pkg string, imports []string) []string
}

var setRules = []setRule{
	{
		// The program that wires the services together lives under cmd/;
		// anywhere else, a package that knows two services couples them.
		name: "only cmd/ may import several services",
		violated: func(pkg string, imports []string) []string {
			if under(pkg, "cmd") {
				return nil
			}
			seen := map[string]bool{}
			if s := serviceOf(pkg); s != "" {
				seen[s] = true
			}
			var offending []string
			for _, imp := range imports {
				if s := serviceOf(imp); s != "" && imp != pkg {
					if !seen[s] {
						offending = append(offending, imp)
					}
					seen[s] = true
				}
			}
			if len(seen) < 2 {
				return nil
			}
			return offending
		},
	},
}

type listedPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func TestImportPolicy(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports,TestImports,XTestImports", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		seen++
		imports := append(append(append([]string{}, p.Imports...), p.TestImports...), p.XTestImports...)
		for _, r := range rules {
			if !r.applies(p.ImportPath) {
				continue
			}
			for _, imp := range imports {
				// A package's external test imports the package itself.
				if imp != p.ImportPath && r.forbidden(p.ImportPath, imp) {
					t.Errorf("%s: %s imports %s", r.name, p.ImportPath, imp)
				}
			}
		}
		for _, r := range setRules {
			if bad := r.violated(p.ImportPath, imports); len(bad) > 0 {
				t.Errorf("%s: %s imports %s", r.name, p.ImportPath, strings.Join(bad, ", "))
			}
		}
	}
	if seen < 10 {
		t.Fatalf("go list found %d packages; the policy check is not looking at the tree", seen)
	}
}

// TestImportPolicyCatchesViolations proves the rules fire: a checker that
// never complains would pass the test above too.
func TestImportPolicyCatchesViolations(t *testing.T) {
	cases := []struct{ pkg, imp string }{
		{module + "/orders", module + "/inventory"},
		{module + "/payments/paymentdb", module + "/orders/orderdb"},
		{module + "/events/outbox", module + "/orders"},
		{module + "/events/consumer", module + "/events/catalog"},
	}
	for _, c := range cases {
		broken := false
		for _, r := range rules {
			if r.applies(c.pkg) && r.forbidden(c.pkg, c.imp) {
				broken = true
			}
		}
		if !broken {
			t.Errorf("%s importing %s: no rule fired, want a violation", c.pkg, c.imp)
		}
	}
	for _, ok := range []struct{ pkg, imp string }{
		{module + "/orders/orderdb", module + "/orders"},
		{module + "/events/catalog", module + "/events/streams"},
		{module + "/cmd/choreo", module + "/orders"},
	} {
		for _, r := range rules {
			if r.applies(ok.pkg) && r.forbidden(ok.pkg, ok.imp) {
				t.Errorf("%s importing %s: rule %q fired, want allowed", ok.pkg, ok.imp, r.name)
			}
		}
	}
}

// TestImportPolicyCatchesSeveralServices proves the set rule fires on
// fabricated import lists, and stays quiet where several services are
// allowed or only one is involved.
func TestImportPolicyCatchesSeveralServices(t *testing.T) {
	fires := func(pkg string, imports ...string) bool {
		for _, r := range setRules {
			if len(r.violated(pkg, imports)) > 0 {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		pkg     string
		imports []string
	}{
		{module + "/tools/sagadebug", []string{module + "/orders", module + "/payments/paymentdb"}},
		{module + "/internal/e2e", []string{module + "/events", module + "/inventory", module + "/notifications/sender"}},
		// A service's own sub-package plus another service: two services.
		{module + "/orders/orderhttp", []string{module + "/orders", module + "/inventory/stockdb"}},
	} {
		if !fires(c.pkg, c.imports...) {
			t.Errorf("%s importing %v: no rule fired, want a violation", c.pkg, c.imports)
		}
	}
	for _, c := range []struct {
		pkg     string
		imports []string
	}{
		{module + "/cmd/choreo", []string{module + "/orders", module + "/inventory", module + "/payments", module + "/notifications"}},
		{module + "/orders/orderdb", []string{module + "/orders", module + "/events/sqldb"}},
		{module + "/tools/one", []string{module + "/payments", module + "/payments/provider"}},
		{module + "/events/history", []string{module + "/events"}},
	} {
		if fires(c.pkg, c.imports...) {
			t.Errorf("%s importing %v: a rule fired, want allowed", c.pkg, c.imports)
		}
	}
	// events/ importing even one service is caught by the pairwise rule.
	caught := false
	for _, r := range rules {
		if r.applies(module+"/events/dlq") && r.forbidden(module+"/events/dlq", module+"/notifications") {
			caught = true
		}
	}
	if !caught {
		t.Error("events/dlq importing notifications: no rule fired, want a violation")
	}
}
