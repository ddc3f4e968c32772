package inventory

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
)

// ReservationStatus is a reservation's place in its life cycle.
type ReservationStatus string

// The statuses a reservation can have. A reservation is RESERVED or FAILED
// when its order is placed; a RESERVED one becomes COMMITTED when the order
// is confirmed.
const (
	Reserved  ReservationStatus = "RESERVED"
	Committed ReservationStatus = "COMMITTED"
	Failed    ReservationStatus = "FAILED"
)

// ErrReservationNotFound is returned for an order that has no reservation.
var ErrReservationNotFound = errors.New("reservation not found")

// ErrInconsistent is returned when a reservation and the stock it holds
// disagree (a reserved count smaller than the reservation): a bug or a
// corrupt database, never a state the domain produces.
var ErrInconsistent = errors.New("reservation and stock disagree")

// Reservation is what inventory decided for one order. Build one with
// Reserve; change it only through its methods, which return the events the
// change publishes.
type Reservation struct {
	OrderID string
	Status  ReservationStatus
	// Lines are the order's lines merged per SKU and sorted: the stock held
	// while RESERVED, sold once COMMITTED, requested in vain when FAILED.
	Lines []catalog.StockLine
	// Shortages are the lines that could not be held, when FAILED.
	Shortages []catalog.Shortage
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Reserve decides the reservation of a newly placed order: when every line
// is available it takes the units from available to reserved in stock and
// returns a RESERVED reservation with its inventory.reserved event;
// otherwise it changes no stock and returns a FAILED reservation with its
// inventory.reservation_failed event listing the shortages. A SKU missing
// from stock counts as none available. lines must be merged per SKU (see
// Lines); invalid input is a Permanent error and changes nothing.
func Reserve(orderID string, lines []catalog.StockLine, stock map[string]*Stock, now time.Time, traceparent string) (*Reservation, []events.Outgoing, error) {
	if err := validateLines(orderID, lines); err != nil {
		return nil, nil, err
	}
	now = now.UTC()
	r := &Reservation{
		OrderID:   orderID,
		Lines:     slices.Clone(lines),
		CreatedAt: now,
		UpdatedAt: now,
	}
	for _, l := range lines {
		var available int64
		if st := stock[l.SKU]; st != nil {
			available = st.Available
		}
		if available < l.Quantity {
			r.Shortages = append(r.Shortages, catalog.Shortage{SKU: l.SKU, Requested: l.Quantity, Available: available})
		}
	}
	if len(r.Shortages) > 0 {
		r.Status = Failed
		return r, []events.Outgoing{r.event(catalog.EventReservationFailed, catalog.TypeStockReservationFailed, now, traceparent,
			catalog.StockReservationFailed{OrderID: orderID, Reason: catalog.ReasonOutOfStock, Shortages: r.Shortages})}, nil
	}
	// Every line was checked above, so no count goes negative here.
	for _, l := range lines {
		st := stock[l.SKU]
		st.Available -= l.Quantity
		st.Reserved += l.Quantity
	}
	r.Status = Reserved
	return r, []events.Outgoing{r.event(catalog.EventReserved, catalog.TypeStockReserved, now, traceparent,
		catalog.StockReserved{OrderID: orderID, Items: r.Lines})}, nil
}

func validateLines(orderID string, lines []catalog.StockLine) error {
	var errs []error
	if err := events.ValidToken(orderID); err != nil {
		errs = append(errs, fmt.Errorf("order id: %w", err))
	}
	if len(lines) == 0 {
		errs = append(errs, errors.New("no lines to reserve"))
	}
	seen := map[string]bool{}
	for i, l := range lines {
		if err := ValidateSKU(l.SKU); err != nil {
			errs = append(errs, fmt.Errorf("lines[%d]: %w", i, err))
		}
		if seen[l.SKU] {
			errs = append(errs, fmt.Errorf("lines[%d]: sku %q on more than one line", i, l.SKU))
		}
		seen[l.SKU] = true
		if l.Quantity < 1 {
			errs = append(errs, fmt.Errorf("lines[%d]: quantity %d < 1", i, l.Quantity))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return events.Permanent(fmt.Errorf("reserve order %s: %w", orderID, err))
	}
	return nil
}

// Commit sells the stock a RESERVED reservation holds, moving each line
// from reserved to sold, and returns the inventory.committed event. A
// COMMITTED reservation is already sold and a FAILED one holds nothing: for
// both Commit changes nothing and returns no event. stock must hold every
// SKU of the reservation; a stock that does not hold the reserved units is
// ErrInconsistent (Permanent), and nothing changes.
func (r *Reservation) Commit(stock map[string]*Stock, now time.Time, traceparent string) ([]events.Outgoing, error) {
	if r.Status != Reserved {
		return nil, nil
	}
	// Check every line before moving any, so an error leaves stock as it was.
	for _, l := range r.Lines {
		st := stock[l.SKU]
		if st == nil || st.Reserved < l.Quantity {
			var have int64
			if st != nil {
				have = st.Reserved
			}
			return nil, events.Permanent(fmt.Errorf("commit order %s: sku %s has %d reserved, want %d: %w",
				r.OrderID, l.SKU, have, l.Quantity, ErrInconsistent))
		}
	}
	for _, l := range r.Lines {
		st := stock[l.SKU]
		st.Reserved -= l.Quantity
		st.Sold += l.Quantity
	}
	now = now.UTC()
	r.Status = Committed
	r.UpdatedAt = now
	return []events.Outgoing{r.event(catalog.EventCommitted, catalog.TypeReservationCommitted, now, traceparent,
		catalog.ReservationCommitted{OrderID: r.OrderID, Items: r.Lines})}, nil
}

// event builds one of the reservation's events. Its id derives from the
// order id and the event name: each happens at most once per order, so a
// redelivered or replayed input yields the same id and the stream's
// duplicate window drops the copy.
func (r *Reservation) event(name, typ string, now time.Time, traceparent string, data any) events.Outgoing {
	return events.Outgoing{
		ID:          events.DerivedID(r.OrderID, catalog.Inventory+"."+name),
		Subject:     catalog.EventSubject(catalog.Inventory, name, r.OrderID),
		Type:        typ,
		Source:      catalog.Source(catalog.Inventory),
		Time:        now,
		Data:        data,
		TraceParent: events.ChildTraceParent(traceparent),
	}
}
