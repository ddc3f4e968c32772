package orders

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/events/catalog"
)

// Status is an order's place in its life cycle.
type Status string

// The statuses an order can have.
const (
	Pending   Status = catalog.StatusPending
	Confirmed Status = catalog.StatusConfirmed
	Cancelled Status = catalog.StatusCancelled
)

// Final reports whether s can no longer change.
func (s Status) Final() bool { return s == Confirmed || s == Cancelled }

// ErrNotCancellable is returned when a customer asks to cancel an order
// that is already confirmed.
var ErrNotCancellable = errors.New("order is confirmed and can no longer be cancelled")

// ErrDifferentOrder is returned when an order id is placed again with other
// content: the id is the idempotency key, so this is a client bug.
var ErrDifferentOrder = errors.New("order id already used for a different order")

// Order is the aggregate the orders service owns. Build one with Place;
// change it only through its On… methods, which return the events the change
// publishes.
type Order struct {
	ID            string
	CustomerID    string
	Items         []catalog.LineItem
	Total         catalog.Money
	Status        Status
	Reason        string
	StockReserved bool
	PaymentID     string
	PlacedAt      time.Time
	UpdatedAt     time.Time
}

// Place validates cmd and returns a new PENDING order with its
// orders.placed event.
func Place(cmd catalog.PlaceOrder, now time.Time) (*Order, []events.Outgoing, error) {
	if err := cmd.Validate(); err != nil {
		return nil, nil, events.Permanent(fmt.Errorf("invalid order: %w", err))
	}
	now = now.UTC()
	o := &Order{
		ID:         cmd.OrderID,
		CustomerID: cmd.CustomerID,
		Items:      slices.Clone(cmd.Items),
		Total:      cmd.Total(),
		Status:     Pending,
		PlacedAt:   now,
		UpdatedAt:  now,
	}
	placed := o.event(catalog.EventPlaced, catalog.TypeOrderPlaced, now, catalog.OrderPlaced{
		OrderID:    o.ID,
		CustomerID: o.CustomerID,
		Items:      o.Items,
		Total:      o.Total,
		PlacedAt:   o.PlacedAt,
	})
	return o, []events.Outgoing{placed}, nil
}

// SameRequest reports whether cmd would place exactly this order, so that a
// repeated place is recognised as a retry rather than a conflicting reuse of
// the id.
func (o *Order) SameRequest(cmd catalog.PlaceOrder) bool {
	return o.CustomerID == cmd.CustomerID && o.Total.Currency == cmd.Currency && slices.Equal(o.Items, cmd.Items)
}

// Headers of the NATS message scheduler (nats-server 2.12+, ADR-51).
const (
	headerSchedule       = "Nats-Schedule"
	headerScheduleTarget = "Nats-Schedule-Target"
	headerScheduleNext   = "Nats-Schedule-Next"
	headerScheduler      = "Nats-Scheduler"
)

// DeadlineEvent returns the schedule that makes the NATS server deliver
// orders.deadline.<id> at deadline: a scheduled message held on
// schedules.orders.deadline.<id> (see catalog.ScheduleSubject), not a
// poller. When it fires, OnDeadline cancels the order if it is still
// pending. The order's final event withdraws it (see EndDeadline), so a
// deadline fires only for an order that is still pending.
func (o *Order) DeadlineEvent(deadline time.Time) events.Outgoing {
	e := o.event(catalog.EventDeadlineScheduled, catalog.TypeOrderDeadline, o.PlacedAt, catalog.OrderDeadline{
		OrderID:  o.ID,
		Deadline: deadline.UTC(),
	})
	// The scheduler fires this body onto the target subject; its
	// CloudEvents id is what the inbox knows the deadline by.
	e.Subject = catalog.ScheduleSubject(catalog.Orders, catalog.EventDeadline, o.ID)
	e.Headers = map[string]string{
		headerSchedule:       "@at " + deadline.UTC().Format(time.RFC3339),
		headerScheduleTarget: catalog.EventSubject(catalog.Orders, catalog.EventDeadline, o.ID),
	}
	return e
}

// EndDeadline makes the order's final events withdraw its deadline
// schedule as they are stored: the server purges the schedule atomically
// with the event (Nats-Schedule-Next: purge), so a final order's deadline
// never fires and costs nothing. Purging a schedule that already fired, or
// never was, changes nothing.
func (o *Order) EndDeadline(out []events.Outgoing) []events.Outgoing {
	for i, e := range out {
		if e.Type != catalog.TypeOrderConfirmed && e.Type != catalog.TypeOrderCancelled {
			continue
		}
		h := make(map[string]string, len(e.Headers)+2)
		for k, v := range e.Headers {
			h[k] = v
		}
		h[headerScheduleNext] = "purge"
		h[headerScheduler] = catalog.ScheduleSubject(catalog.Orders, catalog.EventDeadline, o.ID)
		out[i].Headers = h
	}
	return out
}

// OnStockReserved records that inventory holds the order's stock.
func (o *Order) OnStockReserved(_ catalog.StockReserved, now time.Time) []events.Outgoing {
	if o.StockReserved {
		return nil
	}
	o.StockReserved = true
	o.UpdatedAt = now.UTC()
	return nil
}

// OnStockReservationFailed cancels a pending order as out of stock. A final
// order is left as it is.
func (o *Order) OnStockReservationFailed(_ catalog.StockReservationFailed, now time.Time) []events.Outgoing {
	if o.Status.Final() {
		return nil
	}
	return o.cancel(catalog.ReasonOutOfStock, now)
}

// OnPaymentCaptured confirms a pending order: a capture implies the stock
// was reserved, since payments captures only after the reservation. A
// capture for an order that is already final changes nothing here;
// refunding it is the payments service's job.
func (o *Order) OnPaymentCaptured(e catalog.PaymentCaptured, now time.Time) []events.Outgoing {
	if o.Status.Final() {
		return nil
	}
	now = now.UTC()
	o.Status = Confirmed
	o.StockReserved = true
	o.PaymentID = e.PaymentID
	o.UpdatedAt = now
	return []events.Outgoing{o.event(catalog.EventConfirmed, catalog.TypeOrderConfirmed, now, catalog.OrderConfirmed{
		OrderID:    o.ID,
		CustomerID: o.CustomerID,
		Items:      o.Items,
		Total:      o.Total,
	})}
}

// ErrWrongAmount is wrapped by the error for a capture whose amount is
// not exactly the order's total, in its currency.
var ErrWrongAmount = errors.New("captured amount is not the order's total")

// CheckCapture reports whether e may confirm the order: the money captured
// must be exactly the order's total, in its currency. A capture of
// anything else is not this order's payment — a forgery, or a bug in
// payments — and confirming on it would ship goods that are not paid for
// (a 1-cent capture of a 10.00 EUR order). The error is Permanent: the
// event is dead-lettered with the reason and changes nothing, also on an
// order already final, so the mismatch is seen either way.
func (o *Order) CheckCapture(e catalog.PaymentCaptured) error {
	if e.Amount != o.Total {
		return events.Permanent(fmt.Errorf("order %s: capture %s of %s, total %s: %w", o.ID, e.PaymentID, e.Amount, o.Total, ErrWrongAmount))
	}
	return nil
}

// OnPaymentDeclined cancels a pending order whose payment was refused.
func (o *Order) OnPaymentDeclined(_ catalog.PaymentDeclined, now time.Time) []events.Outgoing {
	if o.Status.Final() {
		return nil
	}
	return o.cancel(catalog.ReasonPaymentDeclined, now)
}

// OnDeadline cancels an order still pending when its deadline comes (the
// payment provider may be down, say); every other service compensates on
// orders.cancelled. A final order is left as it is.
func (o *Order) OnDeadline(_ catalog.OrderDeadline, now time.Time) []events.Outgoing {
	if o.Status.Final() {
		return nil
	}
	return o.cancel(catalog.ReasonTimeout, now)
}

// RequestCancel handles a customer's cancel. A pending order is cancelled;
// a cancelled one stays as it is (the request is a repeat, or came too
// late to matter); a confirmed one cannot be cancelled any more:
// rejected is true and the returned event says why, so a NATS client that
// sent the request learns it.
func (o *Order) RequestCancel(now time.Time) (out []events.Outgoing, rejected bool) {
	switch o.Status {
	case Pending:
		return o.cancel(catalog.ReasonCustomerCancelled, now), false
	case Confirmed:
		return []events.Outgoing{o.event(catalog.EventCancelRejected, catalog.TypeOrderCancelRejected, now.UTC(), catalog.OrderCancelRejected{
			OrderID: o.ID,
			Status:  string(o.Status),
			Reason:  ErrNotCancellable.Error(),
		})}, true
	}
	return nil, false
}

func (o *Order) cancel(reason string, now time.Time) []events.Outgoing {
	now = now.UTC()
	o.Status = Cancelled
	o.Reason = reason
	o.UpdatedAt = now
	return []events.Outgoing{o.event(catalog.EventCancelled, catalog.TypeOrderCancelled, now, catalog.OrderCancelled{
		OrderID:    o.ID,
		CustomerID: o.CustomerID,
		Reason:     reason,
		Items:      o.Items,
		Total:      o.Total,
	})}
}

// event builds one of the order's events. Its id derives from the order id
// and the event name: an order is placed, confirmed or cancelled at most
// once, so a retried or replayed transition yields the same id and the
// stream's duplicate window drops the copy.
func (o *Order) event(name, typ string, now time.Time, data any) events.Outgoing {
	return events.Outgoing{
		ID:         events.DerivedID(o.ID, catalog.Orders+"."+name),
		Subject:    catalog.EventSubject(catalog.Orders, name, o.ID),
		Type:       typ,
		DataSchema: catalog.DataSchema(typ),
		Source:     catalog.Source(catalog.Orders),
		Time:       now,
		Data:       data,
	}
}
