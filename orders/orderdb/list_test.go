package orderdb_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/sqldb"
	"github.com/choreo-dev/choreo/orders"
	"github.com/choreo-dev/choreo/orders/orderdb"
)

// listFixture places twelve orders, two per millisecond (so the order id
// breaks ties), alternately for cust-a and cust-b, and cancels every third
// one. It returns them newest first, the order a listing must give.
func listFixture(t *testing.T, s *orderdb.Store) []*orders.Order {
	t.Helper()
	var all []*orders.Order
	for i := range 12 {
		customer := []string{"cust-a", "cust-b"}[i%2]
		o := placeAt(t, s, fmt.Sprintf("o-%02d", i), customer, t0.Add(time.Duration(i/2)*time.Millisecond))
		if i%3 == 0 {
			if _, err := s.Apply(context.Background(), key("cancel-"+o.ID), o.ID, func(o *orders.Order) (*orders.Order, []events.Outgoing, error) {
				return o, o.OnStockReservationFailed(catalog.StockReservationFailed{OrderID: o.ID}, t0), nil
			}); err != nil {
				t.Fatalf("cancel %s: %v", o.ID, err)
			}
		}
		all = append(all, get(t, s, o.ID))
	}
	slices.Reverse(all)
	return all
}

// placeAt places orderID for customer at the given time.
func placeAt(t *testing.T, s *orderdb.Store, orderID, customer string, at time.Time) *orders.Order {
	t.Helper()
	cmd := placeCmd(orderID)
	cmd.CustomerID = customer
	var placed *orders.Order
	if _, err := s.Apply(context.Background(), key("place-"+orderID), orderID, func(*orders.Order) (*orders.Order, []events.Outgoing, error) {
		o, out, err := orders.Place(cmd, at)
		placed = o
		return o, out, err
	}); err != nil {
		t.Fatalf("place %s: %v", orderID, err)
	}
	return placed
}

// listAll pages through q's listing and returns the ids in the order
// listed, failing on a page larger than the limit or a last page with a
// cursor.
func listAll(t *testing.T, s *orderdb.Store, q orders.ListQuery) []string {
	t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatalf("List(%+v): more than 100 pages", q)
		}
		page, err := s.List(context.Background(), q)
		if err != nil {
			t.Fatalf("List(%+v): %v", q, err)
		}
		if len(page.Orders) > q.Limit {
			t.Fatalf("List(%+v): got %d orders, more than the limit", q, len(page.Orders))
		}
		for _, o := range page.Orders {
			ids = append(ids, o.ID)
		}
		if page.NextCursor == "" {
			return ids
		}
		if len(page.Orders) != q.Limit {
			t.Fatalf("List(%+v): a page of %d orders, short of the limit, with a next cursor", q, len(page.Orders))
		}
		q.Cursor = page.NextCursor
	}
}

func idsOf(all []*orders.Order, keep func(*orders.Order) bool) []string {
	ids := []string{}
	for _, o := range all {
		if keep(o) {
			ids = append(ids, o.ID)
		}
	}
	return ids
}

func testListPagesNewestFirst(t *testing.T, open opener) {
	s, _ := open(t)
	all := listFixture(t, s)
	want := idsOf(all, func(*orders.Order) bool { return true })
	for _, limit := range []int{1, 4, 5, 12, 13, orders.MaxListLimit} {
		if got := listAll(t, s, orders.ListQuery{Limit: limit}); !slices.Equal(got, want) {
			t.Errorf("limit %d: got %v, want %v", limit, got, want)
		}
	}
	// Every field comes back as Get returns it.
	page, err := s.List(context.Background(), orders.ListQuery{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := page.Orders[0], get(t, s, all[0].ID); fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("listed order: got %+v, want %+v as Get returns it", got, want)
	}
}

func testListFilters(t *testing.T, open opener) {
	s, _ := open(t)
	all := listFixture(t, s)
	since := t0.Add(3*time.Millisecond + 500*time.Microsecond) // rounds up to the 4th millisecond
	for _, tc := range []struct {
		name   string
		filter orders.ListFilter
		keep   func(*orders.Order) bool
	}{
		{"Status", orders.ListFilter{Status: orders.Cancelled}, func(o *orders.Order) bool { return o.Status == orders.Cancelled }},
		{"Customer", orders.ListFilter{CustomerID: "cust-b"}, func(o *orders.Order) bool { return o.CustomerID == "cust-b" }},
		{"StatusAndCustomer", orders.ListFilter{Status: orders.Pending, CustomerID: "cust-a"}, func(o *orders.Order) bool {
			return o.Status == orders.Pending && o.CustomerID == "cust-a"
		}},
		{"Since", orders.ListFilter{Since: since}, func(o *orders.Order) bool { return !o.PlacedAt.Before(since) }},
		{"SinceExact", orders.ListFilter{Since: t0.Add(4 * time.Millisecond)}, func(o *orders.Order) bool { return !o.PlacedAt.Before(t0.Add(4 * time.Millisecond)) }},
		{"Everything", orders.ListFilter{Status: orders.Cancelled, CustomerID: "cust-a", Since: t0.Add(time.Millisecond)}, func(o *orders.Order) bool {
			return o.Status == orders.Cancelled && o.CustomerID == "cust-a" && !o.PlacedAt.Before(t0.Add(time.Millisecond))
		}},
		{"NoMatch", orders.ListFilter{CustomerID: "cust-z"}, func(*orders.Order) bool { return false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := idsOf(all, tc.keep)
			if tc.name != "NoMatch" && (len(want) == 0 || len(want) == len(all)) {
				t.Fatalf("fixture: the filter keeps %d of %d orders; it must tell some apart", len(want), len(all))
			}
			if got := listAll(t, s, orders.ListQuery{ListFilter: tc.filter, Limit: 2}); !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

// wantParamError checks that err refuses param.
func wantParamError(t *testing.T, err error, param string) {
	t.Helper()
	var pe *orders.ListParamError
	if !errors.As(err, &pe) || pe.Param != param || !errors.Is(err, orders.ErrInvalidListQuery) || events.KindOf(err) != events.KindPermanent {
		t.Fatalf("got %v, want a permanent ListParamError naming %s", err, param)
	}
}

func testListCursorBoundToFilters(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t)
	listFixture(t, s)
	first := orders.ListQuery{ListFilter: orders.ListFilter{Status: orders.Pending}, Limit: 2}
	page, err := s.List(ctx, first)
	if err != nil || page.NextCursor == "" {
		t.Fatalf("first page: %v, cursor %q; want a cursor", err, page.NextCursor)
	}
	for name, filter := range map[string]orders.ListFilter{
		"NoFilter":      {},
		"OtherStatus":   {Status: orders.Cancelled},
		"AddedCustomer": {Status: orders.Pending, CustomerID: "cust-a"},
		"AddedSince":    {Status: orders.Pending, Since: t0},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.List(ctx, orders.ListQuery{ListFilter: filter, Limit: 2, Cursor: page.NextCursor})
			wantParamError(t, err, "cursor")
		})
	}
	t.Run("SameFiltersOtherLimit", func(t *testing.T) {
		if _, err := s.List(ctx, orders.ListQuery{ListFilter: first.ListFilter, Limit: 3, Cursor: page.NextCursor}); err != nil {
			t.Errorf("got %v, want the next page: the limit may change between pages", err)
		}
	})
	for _, garbage := range []string{"x", "e30", page.NextCursor[:len(page.NextCursor)-2], "!!!!"} {
		_, err := s.List(ctx, orders.ListQuery{ListFilter: first.ListFilter, Cursor: garbage})
		wantParamError(t, err, "cursor")
	}
}

func testListRefusesBadQueries(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t)
	for _, tc := range []struct {
		q     orders.ListQuery
		param string
	}{
		{orders.ListQuery{Limit: -1}, "limit"},
		{orders.ListQuery{Limit: orders.MaxListLimit + 1}, "limit"},
		{orders.ListQuery{ListFilter: orders.ListFilter{Status: "pending"}}, "status"},
		{orders.ListQuery{ListFilter: orders.ListFilter{Status: "SHIPPED"}}, "status"},
		{orders.ListQuery{ListFilter: orders.ListFilter{CustomerID: "cust 1"}}, "customer"},
		{orders.ListQuery{ListFilter: orders.ListFilter{CustomerID: strings.Repeat("c", catalog.MaxIDBytes+1)}}, "customer"},
	} {
		_, err := s.List(ctx, tc.q)
		wantParamError(t, err, tc.param)
	}
}

func testListDefaultLimit(t *testing.T, open opener) {
	s, _ := open(t)
	for i := range orders.DefaultListLimit + 1 {
		placeAt(t, s, fmt.Sprintf("o-%03d", i), "cust-1", t0.Add(time.Duration(i)*time.Millisecond))
	}
	page, err := s.List(context.Background(), orders.ListQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Orders) != orders.DefaultListLimit || page.NextCursor == "" {
		t.Errorf("got %d orders, cursor %q; want %d and a cursor", len(page.Orders), page.NextCursor, orders.DefaultListLimit)
	}
}

// testListUsesIndex checks every filter combination's plan: the index
// migration 0002 meant for it hands the rows over in the listing's order,
// with no sort. On PostgreSQL the
// planner is told to avoid sequential scans and sorts, so that an empty
// test table does not make a sort look cheap: a plan still sorting then
// means no index serves the order.
func testListUsesIndex(t *testing.T, open opener) {
	ctx := context.Background()
	_, db := open(t)
	for _, status := range []orders.Status{"", orders.Pending} {
		for _, customer := range []string{"", "cust-1"} {
			for _, since := range []time.Time{{}, t0} {
				for _, after := range []*orders.Position{nil, {PlacedMillis: t0.UnixMilli(), OrderID: "o-1"}} {
					query, args := orderdb.ListSQL(orders.ListFilter{Status: status, CustomerID: customer, Since: since}, after, 10)
					plan := explain(t, ctx, db, query, args)
					name := fmt.Sprintf("status=%q customer=%q since=%v cursor=%v", status, customer, !since.IsZero(), after != nil)
					index := "orders_by_placed"
					switch {
					case customer != "":
						index = "orders_by_customer"
					case status != "":
						index = "orders_by_status"
					}
					if strings.Contains(plan, "TEMP B-TREE") || strings.Contains(plan, "Sort") || !strings.Contains(plan, index) {
						t.Errorf("%s: plan does not read %s in order:\n%s", name, index, plan)
					}
				}
			}
		}
	}
}

func explain(t *testing.T, ctx context.Context, db *sqldb.DB, query string, args []any) string {
	t.Helper()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	prefix := "EXPLAIN QUERY PLAN "
	if db.Dialect.Engine == sqldb.Postgres {
		prefix = "EXPLAIN "
		if _, err := tx.ExecContext(ctx, "SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off"); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := tx.QueryContext(ctx, db.Dialect.Rebind(prefix+query), args...)
	if err != nil {
		t.Fatalf("explain %s: %v", query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, fmt.Sprint(vals[len(vals)-1])) // the detail column
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}
