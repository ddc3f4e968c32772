package orders

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
)

// Listing pages through orders newest first. The order is keyset
// pagination on (placed time in milliseconds, order id), both descending;
// a page's cursor is the key of its last order, and the next page holds
// the orders whose key is strictly below it.
//
// Why this key gives every order that existed when the first page was
// read exactly once, whatever is placed meanwhile: an order's key never
// changes once the order exists (placed_unix_ms and order_id are written
// by the insert and never updated, and orders are never deleted), and the
// order id makes it unique, so the keys are totally ordered and the pages
// are disjoint, adjacent ranges of that order: page 1 is [cursor1, +∞),
// page 2 [cursor2, cursor1), and so on down to −∞. An order that existed
// before page 1 was read has a key in exactly one of those ranges, and is
// seen when that range is read, since it is still there. Nothing assumes
// that keys are committed in increasing order — they are not: the placed
// time is taken from a replica's clock before its transaction commits, so
// an order can become visible after others with later times (as a
// PostgreSQL sequence value or a commit timestamp can). Such an order,
// like any order placed after page 1, did not exist for page 1: it
// appears once if its key falls in a range read after it committed (its
// key is still in one range only), or not at all if that range was read
// before. A key made of something assigned at commit could not be sorted
// or indexed any better, and an offset would skip or repeat orders as new
// ones push the old ones down.
//
// With a status filter the pages are disjoint all the same, but an order
// whose status changes while the client pages through may leave (or
// enter) the filter: the filter is applied as each page is read.

// Bounds of a page's size.
const (
	DefaultListLimit = 50
	MaxListLimit     = 100
)

// ListFilter selects the orders to list; zero fields select everything.
type ListFilter struct {
	Status     Status
	CustomerID string
	// Since keeps the orders placed at or after it.
	Since time.Time
}

// SinceMillis is Since as the store keeps placed times, in whole
// milliseconds, rounded up: an order placed at millisecond m was placed
// at or after Since exactly when m ≥ SinceMillis. Zero means no bound.
func (f ListFilter) SinceMillis() int64 {
	if f.Since.IsZero() {
		return 0
	}
	ms := f.Since.UnixMilli()
	if time.UnixMilli(ms).Before(f.Since) {
		ms++
	}
	return ms
}

// fingerprint identifies the filter a cursor was made for.
func (f ListFilter) fingerprint() string {
	h := sha256.New()
	var since [8]byte
	binary.BigEndian.PutUint64(since[:], uint64(f.SinceMillis()))
	// Lengths first, so that no two filters write the same bytes.
	fmt.Fprintf(h, "%d:%s%d:%s", len(f.Status), f.Status, len(f.CustomerID), f.CustomerID)
	h.Write(since[:])
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// ListQuery asks for one page of orders.
type ListQuery struct {
	ListFilter
	// Limit is the page's size, 1 to MaxListLimit; 0 means
	// DefaultListLimit.
	Limit int
	// Cursor is the NextCursor of the previous page, made with the same
	// filter; empty for the first page.
	Cursor string
}

// Page is one page of a listing.
type Page struct {
	Orders []*Order
	// NextCursor fetches the next page; empty on the last page.
	NextCursor string
}

// ErrInvalidListQuery is wrapped by every refusal of a ListQuery; the
// error is a *ListParamError naming the parameter.
var ErrInvalidListQuery = errors.New("invalid list query")

// ListParamError says which parameter of a ListQuery is wrong and why.
type ListParamError struct {
	Param  string // "status", "customer", "since", "limit" or "cursor"
	Reason string
}

func (e *ListParamError) Error() string { return e.Param + ": " + e.Reason }

// Unwrap makes the error match ErrInvalidListQuery.
func (e *ListParamError) Unwrap() error { return ErrInvalidListQuery }

// Position is the key of an order in a listing: a page continues below
// it.
type Position struct {
	PlacedMillis int64
	OrderID      string
}

// cursor is the encoded form of a NextCursor: the position and the
// fingerprint of the filter it continues.
type cursor struct {
	PlacedMillis int64  `json:"t"`
	OrderID      string `json:"o"`
	Filter       string `json:"f"`
}

// Validate checks the query and returns the limit to use and the
// position to continue below (nil: from the newest order).
func (q ListQuery) Validate() (limit int, after *Position, err error) {
	switch q.Status {
	case "", Pending, Confirmed, Cancelled:
	default:
		return 0, nil, &ListParamError{"status", fmt.Sprintf("%q is not one of %s, %s, %s", q.Status, Pending, Confirmed, Cancelled)}
	}
	if q.CustomerID != "" {
		if err := catalog.ValidID("customer", q.CustomerID); err != nil {
			return 0, nil, &ListParamError{"customer", events.Detail(err)}
		}
	}
	limit = q.Limit
	if limit == 0 {
		limit = DefaultListLimit
	}
	if limit < 1 || limit > MaxListLimit {
		return 0, nil, &ListParamError{"limit", fmt.Sprintf("%d is not between 1 and %d", q.Limit, MaxListLimit)}
	}
	if q.Cursor == "" {
		return limit, nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(q.Cursor)
	var c cursor
	if err == nil {
		err = json.Unmarshal(raw, &c)
	}
	if err != nil || c.OrderID == "" || c.Filter == "" {
		return 0, nil, &ListParamError{"cursor", "not a cursor this API returned"}
	}
	if c.Filter != q.fingerprint() {
		return 0, nil, &ListParamError{"cursor", "made for other filters: send the status, customer and since of the request that returned it"}
	}
	return limit, &Position{PlacedMillis: c.PlacedMillis, OrderID: c.OrderID}, nil
}

// NextCursor returns the cursor that continues f's listing below o.
func (f ListFilter) NextCursor(o *Order) string {
	// A struct of a number and strings always marshals.
	b, _ := json.Marshal(cursor{PlacedMillis: o.PlacedAt.UnixMilli(), OrderID: o.ID, Filter: f.fingerprint()})
	return base64.RawURLEncoding.EncodeToString(b)
}
