package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// placeOverHTTP places an order for customer with a server-chosen id and
// returns the id.
func placeOverHTTP(ctx context.Context, c *runningChoreo, customer string) (string, error) {
	body := `{"customer_id":"` + customer + `","currency":"EUR","items":[{"sku":"SKU-L","quantity":1,"unit_price":100}]}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.httpURL+"/orders", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var o orderView
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		return "", fmt.Errorf("POST /orders: status %d: %s", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
		return "", fmt.Errorf("POST /orders: %w", err)
	}
	return o.OrderID, nil
}

// TestListOrdersWhilePlacing pages through GET /orders, three orders a
// page, while another client keeps placing orders (and the saga keeps
// changing their statuses): every order placed before the first page was
// read is listed exactly once, and no order twice. (The store's tests
// check the keyset itself on both engines; this one the whole path: the
// edge, the handler, the cursor in a URL, a store being written.)
func TestListOrdersWhilePlacing(t *testing.T) {
	t.Parallel()
	c := startUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()

	existing := map[string]bool{}
	for range 24 {
		id, err := placeOverHTTP(ctx, c, "cust-before")
		if err != nil {
			t.Fatal(err)
		}
		existing[id] = true
	}

	placing, stopPlacing := context.WithCancel(ctx)
	var (
		wg          sync.WaitGroup
		placedAfter int
	)
	wg.Go(func() {
		for placing.Err() == nil {
			if _, err := placeOverHTTP(placing, c, "cust-during"); err != nil {
				if placing.Err() == nil {
					t.Errorf("placing while listing: %v", err)
				}
				return
			}
			placedAfter++
		}
	})

	seen := map[string]int{}
	query := url.Values{"limit": {"3"}}
	pages := 0
	for ; ; pages++ {
		var page struct {
			Orders     []orderView `json:"orders"`
			NextCursor string      `json:"next_cursor"`
		}
		if code := getJSON(t, c.httpURL+"/orders?"+query.Encode(), &page); code != http.StatusOK {
			t.Fatalf("GET /orders?%s: status %d", query.Encode(), code)
		}
		for _, o := range page.Orders {
			seen[o.OrderID]++
		}
		if page.NextCursor == "" {
			break
		}
		query.Set("cursor", page.NextCursor)
		// Besides the concurrent ones, one order surely placed between
		// any two pages: offsets instead of a keyset would list an order
		// twice on every page.
		if _, err := placeOverHTTP(ctx, c, "cust-between"); err != nil {
			t.Fatal(err)
		}
	}
	stopPlacing()
	wg.Wait()

	for id, n := range seen {
		if n != 1 {
			t.Errorf("order %s listed %d times, want once", id, n)
		}
	}
	for id := range existing {
		if seen[id] == 0 {
			t.Errorf("order %s, placed before the first page, was not listed", id)
		}
	}
	if placedAfter == 0 {
		t.Errorf("no order was placed while listing: the test proved nothing about concurrent placing")
	}
	t.Logf("%d pages, %d orders listed; %d placed before, %d while listing", pages+1, len(seen), len(existing), placedAfter)
}
