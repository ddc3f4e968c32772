// Package orderhttp is the orders service's HTTP API: POST /orders and
// GET /orders/{id}. Errors are RFC 9457 problem details.
package orderhttp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/httpauth"
	"github.com/choreo-dev/choreo/events/httpx"
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

// Register adds the orders routes to mux.
func Register(mux httpx.Mux, svc *orders.Service, log *slog.Logger) {
	h := handler{svc: svc, log: log}
	mux.HandleFunc("POST /orders", h.place)
	mux.HandleFunc("GET /orders/{id}", h.get)
	mux.HandleFunc("POST /orders/{id}/cancel", h.cancel)
}

type handler struct {
	svc *orders.Service
	log *slog.Logger
}

// place accepts the body of cmd.orders.place. The order id is the
// idempotency key: a client that cannot choose one sends an
// Idempotency-Key header instead and the order id is derived from it, so a
// retried request finds the same order.
func (h handler) place(w http.ResponseWriter, r *http.Request) {
	var cmd catalog.PlaceOrder
	if !httpx.DecodeJSON(w, r, &cmd) {
		return
	}
	idemKey, keyed, err := idempotencyKey(r)
	if err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	if cmd.OrderID == "" {
		if keyed {
			cmd.OrderID = events.DerivedID("http:"+idemKey, "order")
		} else {
			cmd.OrderID = events.NewID()
		}
	}
	ctx := r.Context()
	// The order id itself makes placing idempotent; no inbox claim needed.
	o, _, err := h.svc.Place(ctx, inbox.Key{}, cmd)
	if keyed && events.KindOf(err) == events.KindConflict {
		// The draft's answer to a key reused with another payload: the
		// request is wrong, not the state of the resource.
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
	// (PRODUCT.md: POST /orders → 202 with the order): a client retrying
	// after a lost response sees the same answer as the first time.
	httpx.WriteJSON(w, http.StatusAccepted, View(o))
}

// idempotencyKey reads the Idempotency-Key header as the IETF draft
// defines it, a structured-field string ("K"); a bare K, as many clients
// send it, is the same key. An empty or invalid key is refused (422), as is
// one over catalog.ValidKey's bound. With authentication on, a key is its
// client's: two clients that happen to pick the same key place two orders.
func idempotencyKey(r *http.Request) (key string, keyed bool, err error) {
	raw, keyed := r.Header["Idempotency-Key"]
	if !keyed {
		return "", false, nil
	}
	if len(raw) != 1 {
		return "", false, events.Permanent(errors.New("Idempotency-Key is given more than once"))
	}
	key, err = sfString(strings.TrimSpace(raw[0]))
	if err != nil {
		return "", false, events.Permanent(fmt.Errorf("Idempotency-Key: %w", err))
	}
	if key == "" {
		return "", false, events.Permanent(errors.New("Idempotency-Key is empty"))
	}
	if err := catalog.ValidKey("Idempotency-Key", key); err != nil {
		return "", false, err
	}
	if sub := httpauth.SubjectOf(r.Context()); sub != "" {
		key = sub + "\x00" + key
	}
	return key, true, nil
}

// sfString decodes an RFC 8941 string ("…" with \" and \\ escapes,
// printable ASCII); a value without quotes is taken as it is.
func sfString(v string) (string, error) {
	if !strings.HasPrefix(v, `"`) {
		return v, nil
	}
	if len(v) < 2 || !strings.HasSuffix(v, `"`) {
		return "", errors.New("a quoted key must end with a quote")
	}
	var b strings.Builder
	inner := v[1 : len(v)-1]
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		switch {
		case c == '\\':
			i++
			if i == len(inner) || (inner[i] != '"' && inner[i] != '\\') {
				return "", errors.New(`only \" and \\ may be escaped`)
			}
			b.WriteByte(inner[i])
		case c == '"':
			return "", errors.New("an unescaped quote inside the key")
		case c < 0x20 || c > 0x7e:
			return "", errors.New("a quoted key holds printable ASCII only")
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
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
