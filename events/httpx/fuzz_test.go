package httpx_test

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/choreo-dev/choreo/events/httpx"
)

// FuzzDecodeJSON: the request body decoder answers every input with
// success or one of its documented problems, and never accepts a body
// that is not valid UTF-8 or not labelled JSON.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range [][2]string{
		{"application/json", `{"sku":"SKU-1","quantity":2}`},
		{"application/json; charset=utf-8", `{"sku":"SKU-1"}`},
		{"application/cloudevents+json", `{"sku":"SKU-1"}`},
		{"", `{"sku":"SKU-1"}`},
		{"application/x-www-form-urlencoded", `{"sku":"SKU-1"}`},
		{"multipart/form-data; boundary=x", "--x\r\n\r\n--x--"},
		{"text/plain", `{"sku":"SKU-1"}`},
		{"application/json;;", `{"sku":"SKU-1"}`},
		{"application/json", "{\"sku\":\"\xff\"}"},
		{"application/json", `{"sku":"SKU-1","qty":1}`},
		{"application/json", `{"quantity":1e400}`},
	} {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/inventory/SKU-1/restock", strings.NewReader(string(body)))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		var v struct {
			SKU      string `json:"sku"`
			Quantity int64  `json:"quantity"`
		}
		if httpx.DecodeJSON(rec, req, &v) {
			mt, _, err := mime.ParseMediaType(ct) // media types are case-insensitive
			if !utf8.Valid(body) || err != nil || (mt != "application/json" && mt != "application/cloudevents+json") {
				t.Fatalf("accepted %q labelled %q", body, ct)
			}
			return
		}
		switch rec.Code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		default:
			t.Fatalf("status %d for %q labelled %q", rec.Code, body, ct)
		}
		var p httpx.Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code || p.Type != httpx.ProblemType(rec.Code) {
			t.Fatalf("problem %s: %v", rec.Body, err)
		}
	})
}
