// Package paymenthttp is the payments service's HTTP API:
// GET /payments/{order_id}. Errors are RFC 9457 problem details.
package paymenthttp

import (
	"log/slog"
	"net/http"

	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/payments"
)

// PaymentView is the JSON shape of a payment. Status is one of WAITING,
// CAPTURE_PENDING, CAPTURED, DECLINED, CANCEL_PENDING, REFUNDED and
// VOIDED; Captured and Refunded are the money the provider took and gave
// back, in Amount's currency.
type PaymentView struct {
	OrderID       string        `json:"order_id"`
	Status        string        `json:"status"`
	Amount        catalog.Money `json:"amount"`
	PaymentID     string        `json:"payment_id"`
	Cancelled     bool          `json:"cancelled"`
	DeclineReason string        `json:"decline_reason,omitempty"`
	Captured      catalog.Money `json:"captured"`
	Refunded      catalog.Money `json:"refunded"`
}

// View returns the JSON shape of p.
func View(p *payments.Payment) PaymentView {
	return PaymentView{
		OrderID:       p.OrderID,
		Status:        string(p.Status),
		Amount:        p.Amount,
		PaymentID:     p.PaymentID,
		Cancelled:     p.Cancelled,
		DeclineReason: p.DeclineReason,
		Captured:      catalog.Money{Amount: p.CapturedAmount, Currency: p.Amount.Currency},
		Refunded:      catalog.Money{Amount: p.RefundedAmount, Currency: p.Amount.Currency},
	}
}

// Register adds the payments routes to mux.
func Register(mux httpx.Mux, svc *payments.Service, log *slog.Logger) {
	h := handler{svc: svc, log: log}
	mux.HandleFunc("GET /payments/{order_id}", h.get)
}

type handler struct {
	svc *payments.Service
	log *slog.Logger
}

// get answers 404 for an order the service has not heard of yet; that
// includes an order just placed whose event is still on its way.
func (h handler) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("order_id")
	if err := catalog.ValidID("order_id", id); err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	p, err := h.svc.Get(r.Context(), id)
	if err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, View(p))
}
