package inventory

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
)

// Stock is the stock of one SKU. Every unit ever received is in exactly one
// of the three counts, so Available + Reserved + Sold is what was received.
// A SKU never restocked has a Stock of zeros.
type Stock struct {
	SKU       string
	Available int64
	Reserved  int64
	Sold      int64
}

// Received is every unit of the SKU ever received.
func (s Stock) Received() int64 { return s.Available + s.Reserved + s.Sold }

// ErrNegativeStock is returned for a stock whose counts went below zero; the
// domain never produces one, so it means a bug or a corrupt row.
var ErrNegativeStock = errors.New("negative stock")

// Validate reports a stock with a negative count.
func (s Stock) Validate() error {
	if s.Available < 0 || s.Reserved < 0 || s.Sold < 0 {
		return fmt.Errorf("sku %s: available %d, reserved %d, sold %d: %w", s.SKU, s.Available, s.Reserved, s.Sold, ErrNegativeStock)
	}
	return nil
}

// ValidateSKU reports a SKU that cannot be a stock key: the same rule the
// catalog applies to the sku of a command (a SKU is the last token of the
// inventory.restocked subject).
func ValidateSKU(sku string) error {
	// catalog keeps its SKU rule unexported; a restock of one unit is valid
	// exactly when its SKU is, so borrow the rule rather than copy it.
	if err := (catalog.Restock{SKU: sku, Quantity: 1}).Validate(); err != nil {
		return events.Permanent(fmt.Errorf("invalid sku: %w", err))
	}
	return nil
}

// Restock adds the units cmd received to the available stock and returns
// the inventory.restocked event. cause is the idempotency key of the
// command: the event id derives from it, so a replayed command yields the
// same event. An empty cause (a caller without a key) gets a fresh id.
// An invalid command or one for another SKU is a Permanent error and
// changes nothing.
func (s *Stock) Restock(cmd catalog.Restock, cause string, now time.Time) ([]events.Outgoing, error) {
	if err := cmd.Validate(); err != nil {
		return nil, events.Permanent(fmt.Errorf("invalid restock: %w", err))
	}
	if cmd.SKU != s.SKU {
		return nil, events.Permanent(fmt.Errorf("restock of sku %s applied to sku %s", cmd.SKU, s.SKU))
	}
	// Received is the sum of the three counts; keep it representable.
	if s.Received() > math.MaxInt64-cmd.Quantity {
		return nil, events.Permanent(fmt.Errorf("restock %s by %d: stock would overflow", s.SKU, cmd.Quantity))
	}
	s.Available += cmd.Quantity
	id := events.NewID()
	if cause != "" {
		id = events.DerivedID(cause, catalog.Inventory+"."+catalog.EventRestocked)
	}
	return []events.Outgoing{{
		ID:         id,
		Subject:    catalog.EventSubject(catalog.Inventory, catalog.EventRestocked, s.SKU),
		Type:       catalog.TypeStockRestocked,
		DataSchema: catalog.DataSchema(catalog.TypeStockRestocked),
		Source:     catalog.Source(catalog.Inventory),
		Time:       now.UTC(),
		Data:       catalog.StockRestocked{SKU: s.SKU, Quantity: cmd.Quantity, Available: s.Available},
	}}, nil
}

// Lines merges order lines into one stock line per SKU, sorted by SKU. The
// catalog rejects an order with two lines of one SKU, but the reservation
// must hold all or nothing whatever it is given, so merge defensively.
func Lines(items []catalog.LineItem) []catalog.StockLine {
	qty := map[string]int64{}
	for _, it := range items {
		qty[it.SKU] += it.Quantity
	}
	lines := make([]catalog.StockLine, 0, len(qty))
	for _, sku := range slices.Sorted(maps.Keys(qty)) {
		lines = append(lines, catalog.StockLine{SKU: sku, Quantity: qty[sku]})
	}
	return lines
}

// SKUs returns the SKUs of lines, in their order.
func SKUs(lines []catalog.StockLine) []string {
	skus := make([]string, len(lines))
	for i, l := range lines {
		skus[i] = l.SKU
	}
	return skus
}
