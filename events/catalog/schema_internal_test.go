package catalog

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
)

// The registry, the embedded schema files and the Go types agree: one
// schema per registered type, and each schema's properties are exactly the
// Go type's JSON fields, all the way down.
func TestSchemasAgreeWithGoTypes(t *testing.T) {
	files, err := schemaFS.ReadDir("schemas")
	if err != nil {
		t.Fatal(err)
	}
	onDisk := map[string]bool{}
	for _, f := range files {
		onDisk[strings.TrimSuffix(f.Name(), ".json")] = true
	}
	for _, ti := range Types() {
		if !onDisk[ti.Name] {
			t.Errorf("%s: no schemas/%s.json", ti.Name, ti.Name)
		}
		delete(onDisk, ti.Name)
		var schema map[string]any
		if err := json.Unmarshal(ti.Schema(), &schema); err != nil {
			t.Fatalf("%s: schema: %v", ti.Name, err)
		}
		if want := schemaBaseURL + ti.Name + ".json"; schema["$id"] != want {
			t.Errorf("%s: $id %v, want %s", ti.Name, schema["$id"], want)
		}
		if closed := schema["additionalProperties"] == false; closed != (ti.Kind == KindCommand) {
			t.Errorf("%s: additionalProperties false is %v; commands are closed, events open", ti.Name, closed)
		}
		compareFields(t, ti.Name, ti.goType, schema)
	}
	for name := range onDisk {
		t.Errorf("schemas/%s.json belongs to no registered type", name)
	}
}

func compareFields(t *testing.T, where string, gt reflect.Type, schema map[string]any) {
	t.Helper()
	props, _ := schema["properties"].(map[string]any)
	goFields := map[string]reflect.Type{}
	for i := range gt.NumField() {
		f := gt.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		goFields[name] = f.Type
	}
	for name, ft := range goFields {
		p, ok := props[name].(map[string]any)
		if !ok {
			t.Errorf("%s: Go field %q is not in the schema", where, name)
			continue
		}
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
			p, _ = p["items"].(map[string]any)
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]() {
			compareFields(t, where+"."+name, ft, p)
		}
	}
	for name := range props {
		if _, ok := goFields[name]; !ok {
			t.Errorf("%s: schema property %q is not a field of %s", where, name, gt)
		}
	}
	req, _ := schema["required"].([]any)
	for _, r := range req {
		if _, ok := goFields[r.(string)]; !ok {
			t.Errorf("%s: required %q is not a field of %s", where, r, gt)
		}
	}
}

// Every example validates against its schema, decodes strictly into its
// Go type and passes the Go checks; event examples are CloudEvents of the
// registered type.
func TestEveryExampleValidates(t *testing.T) {
	for _, ti := range Types() {
		data := []byte(ti.Example)
		if ti.Kind == KindEvent {
			env, err := events.Decode(data)
			if err != nil {
				t.Errorf("%s: example envelope: %v", ti.Name, err)
				continue
			}
			// The CloudEvents subject is the key, as in live events (see
			// events.SubjectKey), not the NATS subject.
			if key := events.SubjectKey(ti.ExampleSubject); env.Type != ti.CloudEventsType || env.Subject != key || !strings.Contains(string(env.Data), `"`+key+`"`) {
				t.Errorf("%s: example type %q subject %q, want %q and the key %q of its data", ti.Name, env.Type, env.Subject, ti.CloudEventsType, key)
			}
			data = env.Data
		}
		if err := ValidateSchema(ti.Name, data); err != nil {
			t.Errorf("%s: example does not validate: %v", ti.Name, err)
		}
		v := reflect.New(ti.goType)
		if err := events.DecodeData(data, v.Interface()); err != nil {
			t.Errorf("%s: example does not decode into %s: %v", ti.Name, ti.GoType, err)
			continue
		}
		if val, ok := v.Elem().Interface().(Validator); ok {
			if err := val.Validate(); err != nil {
				t.Errorf("%s: example fails Validate: %v", ti.Name, err)
			}
		}
		if strings.Contains(string(ti.Example), "'") {
			t.Errorf("%s: example contains a single quote; it could not be pasted into a shell", ti.Name)
		}
		if ti.Effect == "" || ti.Description == "" || ti.Stream == "" {
			t.Errorf("%s: undocumented: %+v", ti.Name, ti)
		}
	}
}

// A Go value with its required fields left at their zero values fails the
// schema, naming the fields.
func TestZeroValuesFailTheSchema(t *testing.T) {
	for _, ti := range Types() {
		b, err := json.Marshal(reflect.Zero(ti.goType).Interface())
		if err != nil {
			t.Fatal(err)
		}
		err = ValidateSchema(ti.Name, b)
		if err == nil {
			t.Errorf("%s: zero value %s validates", ti.Name, b)
			continue
		}
		var schema struct {
			Required []string `json:"required"`
		}
		_ = json.Unmarshal(ti.Schema(), &schema)
		named := false
		for _, r := range schema.Required {
			named = named || strings.Contains(err.Error(), "/"+r)
		}
		if !named || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: zero value: %q names no required field on one line", ti.Name, err)
		}
	}
}

// What producers really publish — nil slices become null, reason omitted —
// validates.
func TestProducerShapesValidate(t *testing.T) {
	for name, v := range map[string]any{
		"orders.cancelled":             OrderCancelled{OrderID: "o", CustomerID: "c", Reason: ReasonTimeout, Total: Money{Currency: "EUR"}},
		"orders.confirmed":             OrderConfirmed{OrderID: "o", CustomerID: "c", Total: Money{Currency: "EUR"}},
		"inventory.reserved":           StockReserved{OrderID: "o"},
		"inventory.reservation_failed": StockReservationFailed{OrderID: "o"},
		"inventory.released":           ReservationReleased{OrderID: "o"},
		"notifications.sent":           NotificationSent{NotificationID: "n", OrderID: "o", Status: StatusCancelled},
		"orders.deadline":              OrderDeadline{OrderID: "o", Deadline: time.Now()},
	} {
		b, _ := json.Marshal(v)
		if err := ValidateSchema(name, b); err != nil {
			t.Errorf("%s %s: %v", name, b, err)
		}
	}
}

// The schema check remembers data that passed, and only that: a second
// look at the same bytes is free, bytes that failed are checked again, and
// the memo never grows past two generations.
func TestSchemaCheckRemembersWhatPassed(t *testing.T) {
	saved := passed
	defer func() { passed = saved }()
	passed = newMemo(2)
	typ := reflect.TypeFor[OrderDeadline]()
	good := []byte(`{"order_id":"o-1","deadline":"2026-01-01T00:00:00Z"}`)
	bad := []byte(`{"order_id":"","deadline":"2026-01-01T00:00:00Z"}`)
	if err := schemaCheck(typ, good); err != nil {
		t.Fatal(err)
	}
	if !passed.has("orders.deadline", good) {
		t.Error("valid data: not remembered")
	}
	if passed.has("orders.placed", good) {
		t.Error("the same bytes under another schema: remembered, want not")
	}
	for range 2 {
		if err := schemaCheck(typ, bad); err == nil {
			t.Error("invalid data: passed")
		}
	}
	if passed.has("orders.deadline", bad) {
		t.Error("invalid data: remembered")
	}
	if err := schemaCheck(typ, []byte(`not json`)); err != nil {
		t.Errorf("malformed data: got %v, want nil (the Go decoder reports it)", err)
	}
	for i := range 5 {
		_ = schemaCheck(typ, []byte(`{"order_id":"o-`+strconv.Itoa(i+2)+`","deadline":"2026-01-01T00:00:00Z"}`))
	}
	if n := len(passed.cur) + len(passed.old); n > 4 {
		t.Errorf("memo holds %d keys, want at most two generations of 2", n)
	}
}
