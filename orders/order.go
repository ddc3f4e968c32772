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
func Place(cmd catalog.PlaceOrder, now time.Time, traceparent string) (*Order, []events.Outgoing, error) {
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
	placed := o.event(catalog.EventPlaced, catalog.TypeOrderPlaced, now, traceparent, catalog.OrderPlaced{
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
func (o *Order) OnStockReservationFailed(_ catalog.StockReservationFailed, now time.Time, traceparent string) []events.Outgoing {
	if o.Status.Final() {
		return nil
	}
	return o.cancel(catalog.ReasonOutOfStock, now, traceparent)
}

// OnPaymentCaptured confirms a pending order: a capture implies the stock
// was reserved, since payments captures only after the reservation. A
// capture for an order that is already final changes nothing here;
// refunding it is the payments service's job.
func (o *Order) OnPaymentCaptured(e catalog.PaymentCaptured, now time.Time, traceparent string) []events.Outgoing {
	if o.Status.Final() {
		return nil
	}
	now = now.UTC()
	o.Status = Confirmed
	o.StockReserved = true
	o.PaymentID = e.PaymentID
	o.UpdatedAt = now
	return []events.Outgoing{o.event(catalog.EventConfirmed, catalog.TypeOrderConfirmed, now, traceparent, catalog.OrderConfirmed{
		OrderID:    o.ID,
		CustomerID: o.CustomerID,
		Items:      o.Items,
		Total:      o.Total,
	})}
}

func (o *Order) cancel(reason string, now time.Time, traceparent string) []events.Outgoing {
	now = now.UTC()
	o.Status = Cancelled
	o.Reason = reason
	o.UpdatedAt = now
	return []events.Outgoing{o.event(catalog.EventCancelled, catalog.TypeOrderCancelled, now, traceparent, catalog.OrderCancelled{
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
func (o *Order) event(name, typ string, now time.Time, traceparent string, data any) events.Outgoing {
	return events.Outgoing{
		ID:          events.DerivedID(o.ID, catalog.Orders+"."+name),
		Subject:     catalog.EventSubject(catalog.Orders, name, o.ID),
		Type:        typ,
		Source:      catalog.Source(catalog.Orders),
		Time:        now,
		Data:        data,
		TraceParent: events.ChildTraceParent(traceparent),
	}
}
