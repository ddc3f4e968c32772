// Package inventoryhttp is the inventory service's HTTP API:
// GET /inventory/{sku} and POST /inventory/{sku}/restock. Errors are RFC
// 9457 problem details.
package inventoryhttp

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
	"github.com/choreo-dev/choreo/events/httpx"
	"github.com/choreo-dev/choreo/events/idempotency"
	"github.com/choreo-dev/choreo/inventory"
)

// StockView is the JSON shape of a SKU's stock.
type StockView struct {
	SKU       string `json:"sku"`
	Available int64  `json:"available"`
	Reserved  int64  `json:"reserved"`
	Sold      int64  `json:"sold"`
}

// View returns the JSON shape of st.
func View(st inventory.Stock) StockView {
	return StockView{SKU: st.SKU, Available: st.Available, Reserved: st.Reserved, Sold: st.Sold}
}

// Register adds the inventory routes to mux. responses replays the first
// response to a restock retried with its Idempotency-Key.
func Register(mux httpx.Mux, svc *inventory.Service, responses *idempotency.Store, log *slog.Logger) {
	h := handler{svc: svc, responses: responses, log: log}
	mux.HandleFunc("GET /inventory/{sku}", h.get)
	mux.HandleFunc("POST /inventory/{sku}/restock", h.restock)
}

type handler struct {
	svc       *inventory.Service
	responses *idempotency.Store
	log       *slog.Logger
}

// get answers 200 with zeros for a SKU never restocked: it simply has
// nothing available, which is not an error.
func (h handler) get(w http.ResponseWriter, r *http.Request) {
	sku := r.PathValue("sku")
	if err := catalog.ValidSKU(sku); err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	st, err := h.svc.Get(r.Context(), sku)
	if err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, View(st))
}

// restock accepts {"quantity": n}, optionally with the "command_id" and
// "sku" of the cmd.inventory.restock body (so that body can be posted as
// it is; its sku must then match the path). The command id is the
// Idempotency-Key header, else command_id, else a fresh id (every such
// request restocks). Over NATS the same command id has the same inbox key,
// so a restock sent both ways is applied once. It answers 202 with the
// stock after the restock, or the current stock for a repeated command —
// except that a request retried with its Idempotency-Key gets the very
// response the first one got (see idempotency.Store.Serve).
func (h handler) restock(w http.ResponseWriter, r *http.Request) {
	var cmd catalog.Restock
	if !httpx.DecodeJSON(w, r, &cmd) {
		return
	}
	sku := r.PathValue("sku")
	if err := catalog.ValidSKU(sku); err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	if cmd.SKU != "" && cmd.SKU != sku {
		httpx.WriteError(w, r, h.log, events.Permanent(fmt.Errorf("body sku %q does not match path sku %q", cmd.SKU, sku)))
		return
	}
	cmd.SKU = sku
	key, keyed, err := idempotency.KeyOf(r, catalog.ValidKey)
	if err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	if !keyed {
		h.restockCmd(w, r, cmd)
		return
	}
	cmd.CommandID = key
	// The command as decoded, its sku from the path included.
	h.responses.ServeCommand(w, r, key, cmd, func(w http.ResponseWriter) {
		h.restockCmd(w, r, cmd)
	})
}

func (h handler) restockCmd(w http.ResponseWriter, r *http.Request, cmd catalog.Restock) {
	if cmd.CommandID == "" {
		cmd.CommandID = events.NewID()
	}
	st, err := h.svc.Restock(r.Context(), inventory.RestockKey(cmd.CommandID), cmd)
	if err != nil {
		httpx.WriteError(w, r, h.log, err)
		return
	}
	httpx.WriteJSON(w, http.StatusAccepted, View(st))
}
