package orderhttp_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/events/httpx"
)

type listResponse struct {
	Orders     []json.RawMessage `json:"orders"`
	NextCursor *string           `json:"next_cursor"`
}

// placeOrders places n orders over HTTP and returns their ids, newest
// first: the clock is stopped, so the order id breaks the tie.
func (a *api) placeOrders(t *testing.T, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		ids[n-1-i] = fmt.Sprintf("order-%02d", i)
		body := strings.Replace(placeBody, "order-1", ids[n-1-i], 1)
		if r := a.post(t, body, nil); r.status != http.StatusAccepted {
			t.Fatalf("place %s: status %d, want 202 (body %s)", ids[n-1-i], r.status, r.body)
		}
	}
	return ids
}

// GET /orders pages newest first; each item is byte for byte what GET
// /orders/{id} answers; next_cursor (and the Link header) is absent on the
// last page only.
func TestListOrders(t *testing.T) {
	a := newAPI(t)
	want := a.placeOrders(t, 5)
	var got []string
	path := "/orders?limit=2&status=pending"
	for pages := 1; ; pages++ {
		r := a.do(t, http.MethodGet, path, "", nil)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: status %d, Content-Type %q; want 200 application/json (body %s)", path, r.status, r.header.Get("Content-Type"), r.body)
		}
		var page listResponse
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatalf("GET %s: %v (body %s)", path, err, r.body)
		}
		for _, item := range page.Orders {
			var id struct {
				OrderID string `json:"order_id"`
			}
			if err := json.Unmarshal(item, &id); err != nil {
				t.Fatal(err)
			}
			one := a.do(t, http.MethodGet, "/orders/"+id.OrderID, "", nil)
			if strings.TrimSpace(string(one.body)) != string(item) {
				t.Errorf("listed %s, GET /orders/{id} answers %s", item, one.body)
			}
			got = append(got, id.OrderID)
		}
		link := r.header.Get("Link")
		if page.NextCursor == nil {
			if pages != 3 || link != "" {
				t.Errorf("last page is page %d with Link %q; want page 3 and no Link", pages, link)
			}
			break
		}
		if *page.NextCursor == "" || len(page.Orders) != 2 {
			t.Fatalf("page %d: %d orders, next_cursor %q; want 2 and a cursor", pages, len(page.Orders), *page.NextCursor)
		}
		path = "/orders?" + url.Values{"limit": {"2"}, "status": {"pending"}, "cursor": {*page.NextCursor}}.Encode()
		if wantLink := `<` + path + `>; rel="next"`; link != wantLink {
			t.Errorf("Link: got %s, want %s", link, wantLink)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("listed %v, want %v", got, want)
	}

	// No order matches: an empty list, not null.
	r := a.do(t, http.MethodGet, "/orders?customer=nobody", "", nil)
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"orders":[]}` {
		t.Errorf("no match: got %d %s, want 200 {\"orders\":[]}", r.status, r.body)
	}
}

// Every parameter GET /orders cannot take is a 400 problem naming it.
func TestListOrdersRefusesBadParameters(t *testing.T) {
	a := newAPI(t)
	a.placeOrders(t, 3)
	r := a.do(t, http.MethodGet, "/orders?limit=1&status=PENDING", "", nil)
	var page listResponse
	if err := json.Unmarshal(r.body, &page); err != nil || page.NextCursor == nil {
		t.Fatalf("first page %s: %v; want a next_cursor", r.body, err)
	}
	cursor := url.QueryEscape(*page.NextCursor)
	for query, param := range map[string]string{
		"limit=0":                           "limit",
		"limit=101":                         "limit",
		"limit=ten":                         "limit",
		"limit=1&limit=2":                   "limit",
		"status=shipped":                    "status",
		"status=":                           "status",
		"customer=a%20b":                    "customer",
		"customer=a.b":                      "customer",
		"customer=":                         "customer",
		"since=yesterday":                   "since",
		"since=2026-12-01":                  "since",
		"cursor=garbage":                    "cursor",
		"cursor=":                           "cursor",
		"status=confirmed&cursor=" + cursor: "cursor",
		"limit=1&cursor=" + cursor:          "cursor",
		"customer=cust-1&status=pending&cursor=" + cursor: "cursor",
		"sort=asc": `"sort"`,
	} {
		r := a.do(t, http.MethodGet, "/orders?"+query, "", nil)
		p := problem(t, r, http.StatusBadRequest)
		if p.Type != httpx.ProblemType(http.StatusBadRequest) || !strings.HasPrefix(p.Detail, "query parameter "+param+":") {
			t.Errorf("?%s: got %+v, want a problem naming %s", query, p, param)
		}
	}
	// The cursor continues with the filters it was made with, in any case
	// and with another limit.
	r = a.do(t, http.MethodGet, "/orders?status=pending&limit=5&cursor="+cursor, "", nil)
	if err := json.Unmarshal(r.body, &page); r.status != http.StatusOK || err != nil || len(page.Orders) != 2 {
		t.Errorf("second page: got %d %s, want 200 with the 2 remaining orders", r.status, r.body)
	}
}
