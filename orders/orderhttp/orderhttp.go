// Package orderhttp is the orders service's HTTP API: POST /orders,
// GET /orders, GET /orders/{id} and POST /orders/{id}/cancel. Errors are
// RFC 9457 problem details.
package orderhttp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/httpauth"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/events/idempotency"
	"github.com/choreo-dev/choreo/events/inbox"
	"github.com/choreo-dev/choreo/orders"
)

// OrderView is the JSON shape of an order.
type OrderView struct {
	OrderID    string             `json:"order_id"`
	CustomerID string             `json:"customer_id"`
	Status     string             `json:"status"`
	Reason     string             `json:"reason,omitempty"`
	Total      catalog.Money      `json:"total"`
	Items      []catalog.LineItem `json:"items"`
	PlacedAt   time.Time          `json:"placed_at"`
	UpdatedAt  time.Time          `json:"updated_at"`
}

// View returns the JSON shape of o.
func View(o *orders.Order) OrderView {
	return OrderView{
		OrderID:    o.ID,
		CustomerID: o.CustomerID,
		Status:     string(o.Status),
		Reason:     o.Reason,
		Total:      o.Total,
		Items:      o.Items,
		PlacedAt:   o.PlacedAt,
		UpdatedAt:  o.UpdatedAt,
	}
}

// Register adds the orders routes to mux. responses replays the first
// response to a POST /orders retried with its Idempotency-Key.
func Register(mux httpx.Mux, svc *orders.Service, responses *idempotency.Store, log *slog.Logger) {
	h := handler{svc: svc, responses: responses, log: log}
	mux.HandleFunc("POST /orders", h.place)
	mux.HandleFunc("GET /orders", h.list)
	mux.HandleFunc("GET /orders/{id}", h.get)
	mux.HandleFunc("POST /orders/{id}/cancel", h.cancel)
}

type handler struct {
	svc       *orders.Service
	responses *idempotency.Store
	log       *slog.Logger
}

// place accepts the body of cmd.orders.place. The order id is the
// idempotency key: a client that cannot choose one sends an
// Idempotency-Key header instead and the order id is derived from it, so a
// retried request finds the same order — and gets the very response the
// first request got (see idempotency.Store.Serve), not the order as it
// has become since.
func (h handler) place(w http.ResponseWriter, r *http.Request) {
	var cmd catalog.PlaceOrder
	if !httpx.DecodeJSON(w, r, &cmd) {
		return
	}
	key, keyed, err := idempotency.KeyOf(r, catalog.ValidKey)
	if err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	if !keyed {
		h.placeOrder(w, r, cmd, "")
		return
	}
	// The command as decoded, before an order id is derived from the key.
	h.responses.ServeCommand(w, r, key, cmd, func(w http.ResponseWriter) {
		h.placeOrder(w, r, cmd, key)
	})
}

// placeOrder places cmd; key is the request's Idempotency-Key, or "".
// With authentication on, a key is its client's: two clients that happen
// to pick the same key place two orders.
func (h handler) placeOrder(w http.ResponseWriter, r *http.Request, cmd catalog.PlaceOrder, key string) {
	if cmd.OrderID == "" {
		if key != "" {
			if sub := httpauth.SubjectOf(r.Context()); sub != "" {
				key = sub + "\x00" + key
			}
			cmd.OrderID = events.DerivedID("http:"+key, "order")
		} else {
			cmd.OrderID = events.NewID()
		}
	}
	// The order id itself makes placing idempotent; no inbox claim needed.
	o, _, err := h.svc.Place(r.Context(), inbox.Key{}, cmd)
	if key != "" && events.KindOf(err) == events.KindConflict {
		// The draft's answer to a key reused with another payload: the
		// request is wrong, not the state of the resource. (A key used
		// before its response was stored gets here; see idempotency.)
		httpx.WriteProblem(w, r, http.StatusUnprocessableEntity, "Invalid request",
			"Idempotency-Key was used for a request with another body: "+events.Detail(err))
		return
	}
	if err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	w.Header().Set("Location", "/orders/"+o.ID)
	// 202 whether this request created the order or repeated one that did
	// (PRODUCT.md: POST /orders → 202 with the order).
	httpx.WriteJSON(w, http.StatusAccepted, View(o))
}

// ListView is the JSON shape of a page of orders.
type ListView struct {
	Orders []OrderView `json:"orders"`
	// NextCursor, passed as ?cursor= with the same filters, fetches the
	// next page; absent on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// listParams are the query parameters GET /orders takes.
var listParams = []string{"status", "customer", "since", "limit", "cursor"}

// list answers GET /orders: a page of orders newest first, filtered by
// ?status=, ?customer= and ?since=, ?limit= per page, continued with
// ?cursor= (see orders.ListQuery). A parameter it cannot take — unknown,
// repeated, or an invalid value — is a 400 naming it: a misspelt filter
// silently ignored would list orders the client did not ask for.
func (h handler) list(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r.URL.Query())
	if err == nil {
		var page orders.Page
		if page, err = h.svc.List(r.Context(), q); err == nil {
			writePage(w, r, page)
			return
		}
	}
	if pe := (*orders.ListParamError)(nil); errors.As(err, &pe) {
		httpx.WriteProblem(w, r, http.StatusBadRequest, "Invalid query parameter", fmt.Sprintf("query parameter %s: %s", pe.Param, pe.Reason))
		return
	}
	httpx.WriteError(w, r, h.log, err)
}

// listQuery reads GET /orders's query parameters. Values are checked here
// as far as their syntax goes; the store checks the rest (status names,
// customer ids, limit bounds, cursors) and answers a *ListParamError too.
func listQuery(values url.Values) (orders.ListQuery, error) {
	var q orders.ListQuery
	for name, vs := range values {
		if !slices.Contains(listParams, name) {
			return q, &orders.ListParamError{Param: strconv.Quote(name), Reason: "unknown; GET /orders takes " + strings.Join(listParams, ", ")}
		}
		if len(vs) != 1 {
			return q, &orders.ListParamError{Param: name, Reason: "given more than once"}
		}
	}
	// Statuses are written in upper case in orders and in lower case in
	// the query string: either is taken.
	q.Status = orders.Status(strings.ToUpper(values.Get("status")))
	if values.Has("status") && q.Status == "" {
		return q, &orders.ListParamError{Param: "status", Reason: "is empty"}
	}
	q.CustomerID = values.Get("customer")
	if values.Has("customer") && q.CustomerID == "" {
		return q, &orders.ListParamError{Param: "customer", Reason: "is empty"}
	}
	if raw := values.Get("since"); values.Has("since") {
		since, err := time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			return q, &orders.ListParamError{Param: "since", Reason: "not an RFC 3339 timestamp such as 2026-12-01T15:04:05Z"}
		}
		q.Since = since
	}
	if raw := values.Get("limit"); values.Has("limit") {
		limit, err := strconv.Atoi(raw)
		if err != nil || limit < 1 || limit > orders.MaxListLimit {
			return q, &orders.ListParamError{Param: "limit", Reason: fmt.Sprintf("not a number from 1 to %d", orders.MaxListLimit)}
		}
		q.Limit = limit
	}
	q.Cursor = values.Get("cursor")
	if values.Has("cursor") && q.Cursor == "" {
		return q, &orders.ListParamError{Param: "cursor", Reason: "is empty"}
	}
	return q, nil
}

// writePage answers 200 with page, and a Link to the next page (RFC 8288)
// for clients that follow links rather than read next_cursor.
func writePage(w http.ResponseWriter, r *http.Request, page orders.Page) {
	view := ListView{Orders: make([]OrderView, 0, len(page.Orders)), NextCursor: page.NextCursor}
	for _, o := range page.Orders {
		view.Orders = append(view.Orders, View(o))
	}
	if page.NextCursor != "" {
		next := r.URL.Query()
		next.Set("cursor", page.NextCursor)
		w.Header().Set("Link", "<"+r.URL.Path+"?"+next.Encode()+`>; rel="next"`)
	}
	httpx.WriteJSON(w, http.StatusOK, view)
}

func (h handler) get(w http.ResponseWriter, r *http.Request) {
	id, ok := orderID(w, r, h.log)
	if !ok {
		return
	}
	o, err := h.svc.Get(r.Context(), id)
	if err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, View(o))
}

// cancel cancels a pending order: 200 with the cancelled order (also when
// it was cancelled before), 409 when it is already confirmed, 404 when it
// does not exist. It takes no body.
func (h handler) cancel(w http.ResponseWriter, r *http.Request) {
	if !httpx.RequireNoBody(w, r) {
		return
	}
	id, ok := orderID(w, r, h.log)
	if !ok {
		return
	}
	o, err := h.svc.Cancel(r.Context(), inbox.Key{}, id)
	if err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, View(o))
}

// orderID returns the path's order id, or answers 422 when it could never
// be one (see catalog.ValidID): such an id is refused before it reaches
// the store, whose answer could otherwise be a database error.
func orderID(w http.ResponseWriter, r *http.Request, log *slog.Logger) (string, bool) {
	id := r.PathValue("id")
	if err := catalog.ValidID("order_id", id); err != nil {
		httpx.WriteError(w, r, log, err)
		return "", false
	}
	return id, true
}
