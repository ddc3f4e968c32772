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

// The statuses a reservation can have. Placement decides RESERVED or
// FAILED; a RESERVED reservation then ends COMMITTED when its order is
// confirmed or RELEASED when it is cancelled. Inputs can arrive in any
// order, so two statuses stand for an order whose placement has not been
// seen yet: AWAITING_PLACEMENT (confirmed first; the placement will
// reserve and commit at once) and CANCELLED (cancelled first: a tombstone,
// and the placement will reserve nothing). Only RESERVED and COMMITTED
// hold stock.
const (
	Reserved          ReservationStatus = "RESERVED"
	Committed         ReservationStatus = "COMMITTED"
	Failed            ReservationStatus = "FAILED"
	Released          ReservationStatus = "RELEASED"
	AwaitingPlacement ReservationStatus = "AWAITING_PLACEMENT"
	Cancelled         ReservationStatus = "CANCELLED"
)

// Valid reports whether s is one of the statuses above.
func (s ReservationStatus) Valid() bool {
	switch s {
	case Reserved, Committed, Failed, Released, AwaitingPlacement, Cancelled:
		return true
	}
	return false
}

// ErrReservationNotFound is returned for an order that has no reservation.
var ErrReservationNotFound = errors.New("reservation not found")

// ErrInconsistent is returned when a reservation and the stock it holds
// disagree (a reserved count smaller than the reservation), or its status
// contradicts the inputs it has seen: a bug or a corrupt database, never a
// state the domain produces.
var ErrInconsistent = errors.New("reservation and stock disagree")

// Inputs records which of an order's events inventory has handled. They
// make the outcome independent of the order the events arrive in: a
// confirmation or a cancellation that comes before the placement is
// remembered, and the placement then acts on it.
type Inputs struct {
	Placed    bool
	Confirmed bool
	Cancelled bool
}

// Reservation is what inventory decided for one order. Build one with
// Reserve (or OnPlaced, OnConfirmed and OnCancelled, which also accept an
// order seen for the first time); change it only through its methods and
// those functions, which return the events the change publishes.
type Reservation struct {
	OrderID string
	Status  ReservationStatus
	// Seen records the order's events handled so far.
	Seen Inputs
	// Lines are the order's lines merged per SKU and sorted, as placed: the
	// stock held while RESERVED, sold once COMMITTED, given back once
	// RELEASED, requested in vain when FAILED or CANCELLED. Empty until the
	// placement has been seen.
	Lines []catalog.StockLine
	// Shortages are the lines that could not be held, when FAILED.
	Shortages []catalog.Shortage
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Validate reports a reservation whose status contradicts the inputs it
// has seen, a state no transition produces.
func (r *Reservation) Validate() error {
	ok := r.Status.Valid()
	switch r.Status {
	case Reserved:
		ok = r.Seen == Inputs{Placed: true}
	case Committed:
		ok = r.Seen.Placed && r.Seen.Confirmed
	case Failed:
		ok = r.Seen.Placed
	case Released:
		ok = r.Seen.Placed && r.Seen.Cancelled
	case AwaitingPlacement:
		ok = r.Seen == Inputs{Confirmed: true}
	case Cancelled:
		ok = r.Seen.Cancelled
	}
	if !ok {
		return fmt.Errorf("reservation %s: status %q with inputs seen %+v: %w", r.OrderID, r.Status, r.Seen, ErrInconsistent)
	}
	return nil
}

// Reserve decides the reservation of a newly placed order: when every line
// is available it takes the units from available to reserved in stock and
// returns a RESERVED reservation with its inventory.reserved event;
// otherwise it changes no stock and returns a FAILED reservation with its
// inventory.reservation_failed event listing the shortages. A SKU missing
// from stock counts as none available. lines must be merged per SKU (see
// Lines); invalid input is a Permanent error and changes nothing.
func Reserve(orderID string, lines []catalog.StockLine, stock map[string]*Stock, now time.Time) (*Reservation, []events.Outgoing, error) {
	if err := validateLines(orderID, lines); err != nil {
		return nil, nil, err
	}
	now = now.UTC()
	r := &Reservation{
		OrderID:   orderID,
		Seen:      Inputs{Placed: true},
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
		return r, []events.Outgoing{r.event(catalog.EventReservationFailed, catalog.TypeStockReservationFailed, now,
			catalog.StockReservationFailed{OrderID: orderID, Reason: catalog.ReasonOutOfStock, Shortages: r.Shortages})}, nil
	}
	// Every line was checked above, so no count goes negative here.
	for _, l := range lines {
		st := stock[l.SKU]
		st.Available -= l.Quantity
		st.Reserved += l.Quantity
	}
	r.Status = Reserved
	return r, []events.Outgoing{r.event(catalog.EventReserved, catalog.TypeStockReserved, now,
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
// from reserved to sold, and returns the inventory.committed event. Any
// other reservation holds no reserved stock: Commit changes nothing and
// returns no event (OnConfirmed records the confirmation on those). stock
// must hold every SKU of the reservation; a stock that does not hold the
// reserved units is ErrInconsistent (Permanent), and nothing changes.
func (r *Reservation) Commit(stock map[string]*Stock, now time.Time) ([]events.Outgoing, error) {
	if r.Status != Reserved {
		return nil, nil
	}
	if err := r.checkHeld(stock, "commit"); err != nil {
		return nil, err
	}
	for _, l := range r.Lines {
		st := stock[l.SKU]
		st.Reserved -= l.Quantity
		st.Sold += l.Quantity
	}
	now = now.UTC()
	r.Status = Committed
	r.Seen.Confirmed = true
	r.UpdatedAt = now
	return []events.Outgoing{r.event(catalog.EventCommitted, catalog.TypeReservationCommitted, now,
		catalog.ReservationCommitted{OrderID: r.OrderID, Items: r.Lines})}, nil
}

// Release gives the stock a RESERVED reservation holds back, moving each
// line from reserved to available, and returns the inventory.released
// event. Any other reservation holds no reserved stock: Release changes
// nothing and returns no event (OnCancelled records the cancellation on
// those). Errors are those of Commit.
func (r *Reservation) Release(stock map[string]*Stock, now time.Time) ([]events.Outgoing, error) {
	if r.Status != Reserved {
		return nil, nil
	}
	if err := r.checkHeld(stock, "release"); err != nil {
		return nil, err
	}
	for _, l := range r.Lines {
		st := stock[l.SKU]
		st.Reserved -= l.Quantity
		st.Available += l.Quantity
	}
	now = now.UTC()
	r.Status = Released
	r.Seen.Cancelled = true
	r.UpdatedAt = now
	return []events.Outgoing{r.event(catalog.EventReleased, catalog.TypeReservationReleased, now,
		catalog.ReservationReleased{OrderID: r.OrderID, Items: r.Lines})}, nil
}

// checkHeld checks every line before any moves, so that an error leaves
// stock as it was.
func (r *Reservation) checkHeld(stock map[string]*Stock, op string) error {
	for _, l := range r.Lines {
		st := stock[l.SKU]
		if st == nil || st.Reserved < l.Quantity {
			var have int64
			if st != nil {
				have = st.Reserved
			}
			return events.Permanent(fmt.Errorf("%s order %s: sku %s has %d reserved, want %d: %w",
				op, r.OrderID, l.SKU, have, l.Quantity, ErrInconsistent))
		}
	}
	return nil
}

// The three transitions below are what the service's handlers run. Each
// takes the order's reservation as it stands (nil: none of the order's
// events was seen yet) and returns the reservation to save (nil: nothing
// changes) and the events to publish. They are written so that any arrival
// order and any duplication of one order's events ends in the same place:
// every event is recorded in Seen, a repeated one changes nothing, and an
// early confirmation or cancellation is acted on when the placement comes.
// Each may change the reservation it is given; on error neither it nor
// stock has changed.

// OnPlaced handles orders.placed. A first placement reserves every line or
// none (see Reserve); when the order was confirmed before, it reserves and
// commits at once, and when it was cancelled before, it reserves nothing
// and publishes nothing: the CANCELLED tombstone stays, now with the
// order's lines. A placement seen before changes nothing, whatever the
// status: an order is decided once. Invalid lines are a Permanent error.
func OnPlaced(res *Reservation, orderID string, lines []catalog.StockLine, stock map[string]*Stock, now time.Time) (*Reservation, []events.Outgoing, error) {
	if err := validateLines(orderID, lines); err != nil {
		return nil, nil, err
	}
	switch {
	case res == nil:
		return Reserve(orderID, lines, stock, now)
	case res.Seen.Placed:
		return nil, nil, nil
	case res.Seen.Cancelled:
		res.Seen.Placed = true
		res.Lines = slices.Clone(lines)
		res.UpdatedAt = now.UTC()
		return res, nil, nil
	}
	// Confirmed before placed: decide now, then act on the confirmation.
	next, out, err := Reserve(orderID, lines, stock, now)
	if err != nil {
		return nil, nil, err
	}
	next.Seen.Confirmed = res.Seen.Confirmed
	next.CreatedAt = res.CreatedAt
	if next.Status == Reserved && next.Seen.Confirmed {
		more, err := next.Commit(stock, now)
		if err != nil { // cannot happen: Reserve just reserved the lines
			return nil, nil, err
		}
		out = append(out, more...)
	}
	return next, out, nil
}

// OnConfirmed handles orders.confirmed. A RESERVED reservation is
// committed (see Commit). Before the placement the confirmation is
// remembered in an AWAITING_PLACEMENT reservation, for OnPlaced to act on.
// Anything else holds nothing to commit: the confirmation is only
// recorded, and a repeated one changes nothing. The orders service never
// confirms an order whose reservation failed or which it cancelled; the
// caller logs those (see Anomaly).
func OnConfirmed(res *Reservation, orderID string, stock map[string]*Stock, now time.Time) (*Reservation, []events.Outgoing, error) {
	if err := events.ValidToken(orderID); err != nil {
		return nil, nil, events.Permanent(fmt.Errorf("confirm order %q: %w", orderID, err))
	}
	switch {
	case res == nil:
		return newUnplaced(orderID, AwaitingPlacement, Inputs{Confirmed: true}, now), nil, nil
	case res.Status == Reserved:
		out, err := res.Commit(stock, now)
		if err != nil {
			return nil, nil, err
		}
		return res, out, nil
	case res.Seen.Confirmed:
		return nil, nil, nil
	}
	res.Seen.Confirmed = true
	res.UpdatedAt = now.UTC()
	return res, nil, nil
}

// OnCancelled handles orders.cancelled, whatever its reason. A RESERVED
// reservation is released (see Release). Before the placement the
// cancellation leaves a CANCELLED tombstone, so that the placement
// reserves nothing, even when the order had been confirmed first.
// Anything else holds nothing to release: the cancellation is only
// recorded, and a repeated one changes nothing. A COMMITTED reservation
// stays sold — the orders service never cancels a confirmed order; the
// caller logs that (see Anomaly).
func OnCancelled(res *Reservation, orderID string, stock map[string]*Stock, now time.Time) (*Reservation, []events.Outgoing, error) {
	if err := events.ValidToken(orderID); err != nil {
		return nil, nil, events.Permanent(fmt.Errorf("cancel order %q: %w", orderID, err))
	}
	switch {
	case res == nil:
		return newUnplaced(orderID, Cancelled, Inputs{Cancelled: true}, now), nil, nil
	case res.Status == Reserved:
		out, err := res.Release(stock, now)
		if err != nil {
			return nil, nil, err
		}
		return res, out, nil
	case res.Seen.Cancelled:
		return nil, nil, nil
	case res.Status == AwaitingPlacement:
		res.Status = Cancelled
	}
	res.Seen.Cancelled = true
	res.UpdatedAt = now.UTC()
	return res, nil, nil
}

// newUnplaced is the reservation of an order whose first event seen is not
// its placement: it holds nothing, and has no lines yet.
func newUnplaced(orderID string, status ReservationStatus, seen Inputs, now time.Time) *Reservation {
	now = now.UTC()
	return &Reservation{OrderID: orderID, Status: status, Seen: seen, CreatedAt: now, UpdatedAt: now}
}

// Anomaly describes a reservation whose inputs the saga never produces
// together — an order both confirmed and cancelled, or confirmed although
// its reservation failed — or returns "" for a consistent one. Inventory
// still ends in a defined state (stock that was sold stays sold; stock that
// was never held or was given back is not taken again), but an operator
// should look at the order.
func (r *Reservation) Anomaly() string {
	switch {
	case r == nil:
		return ""
	case r.Seen.Confirmed && r.Seen.Cancelled:
		return "order both confirmed and cancelled"
	case r.Seen.Confirmed && r.Status == Failed:
		return "order confirmed although its reservation failed"
	}
	return ""
}

// event builds one of the reservation's events. Its id derives from the
// order id and the event name: each happens at most once per order, so a
// redelivered or replayed input yields the same id and the stream's
// duplicate window drops the copy.
func (r *Reservation) event(name, typ string, now time.Time, data any) events.Outgoing {
	return events.Outgoing{
		ID:         events.DerivedID(r.OrderID, catalog.Inventory+"."+name),
		Subject:    catalog.EventSubject(catalog.Inventory, name, r.OrderID),
		Type:       typ,
		DataSchema: catalog.DataSchema(typ),
		Source:     catalog.Source(catalog.Inventory),
		Time:       now,
		Data:       data,
	}
}
