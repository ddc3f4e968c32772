package catalog

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// CloudEvents types of choreo's events. The subject's middle token is the
// event name ("orders.placed.<order-id>").
const (
	TypeOrderPlaced            = "choreo.orders.placed.v1"
	TypeOrderConfirmed         = "choreo.orders.confirmed.v1"
	TypeOrderCancelled         = "choreo.orders.cancelled.v1"
	TypeStockReserved          = "choreo.inventory.reserved.v1"
	TypeStockReservationFailed = "choreo.inventory.reservation_failed.v1"
	TypeReservationCommitted   = "choreo.inventory.committed.v1"
	TypeStockRestocked         = "choreo.inventory.restocked.v1"
	TypePaymentCaptured        = "choreo.payments.captured.v1"
	TypeNotificationSent       = "choreo.notifications.sent.v1"
	TypeOrderCancelRejected    = "choreo.orders.cancel_rejected.v1"
	TypeOrderDeadline          = "choreo.orders.deadline.v1"
	TypeReservationReleased    = "choreo.inventory.released.v1"
	TypePaymentDeclined        = "choreo.payments.declined.v1"
	TypePaymentRefunded        = "choreo.payments.refunded.v1"
	TypePaymentVoided          = "choreo.payments.voided.v1"
)

// Event names: the middle token of event subjects.
const (
	EventPlaced            = "placed"
	EventConfirmed         = "confirmed"
	EventCancelled         = "cancelled"
	EventReserved          = "reserved"
	EventReservationFailed = "reservation_failed"
	EventCommitted         = "committed"
	EventRestocked         = "restocked"
	EventCaptured          = "captured"
	EventSent              = "sent"
	EventCancelRejected    = "cancel_rejected"
	// EventDeadlineScheduled names an order's deadline schedule: a message
	// on ScheduleSubject carrying the Nats-Schedule headers, whose body the
	// server fires onto EventDeadline's subject when the deadline comes.
	EventDeadlineScheduled = "deadline_scheduled"
	EventDeadline          = "deadline"
	EventReleased          = "released"
	EventDeclined          = "declined"
	EventRefunded          = "refunded"
	EventVoided            = "voided"
)

// Command subjects.
const (
	SubjectPlaceOrder  = "cmd.orders.place"
	SubjectCancelOrder = "cmd.orders.cancel"
	SubjectRestock     = "cmd.inventory.restock"
)

// Order statuses and cancellation reasons, as the HTTP API shows them.
const (
	StatusPending   = "PENDING"
	StatusConfirmed = "CONFIRMED"
	StatusCancelled = "CANCELLED"

	ReasonOutOfStock        = "out_of_stock"
	ReasonPaymentDeclined   = "payment_declined"
	ReasonCustomerCancelled = "customer_cancelled"
	ReasonTimeout           = "timeout"
)

// CommandSubject returns "cmd.<service>.<action>", the subject of a
// command to service ("cmd.orders.place").
func CommandSubject(service, action string) string {
	return "cmd." + service + "." + action
}

// EventSubject returns "<service>.<event>.<key>" for a domain event.
func EventSubject(service, event, key string) string {
	return service + "." + event + "." + key
}

// SchedulePrefix starts the subjects of scheduled messages: a schedule
// lives on "schedules.<service>.<event>.<key>", in its service's stream
// but outside "<service>.>", so that a subscriber to "orders.>" or
// "*.*.<order-id>" sees a deadline when it fires, never its schedule.
const SchedulePrefix = "schedules"

// ScheduleSubject returns the subject of the schedule that fires event on
// EventSubject(service, event, key).
func ScheduleSubject(service, event, key string) string {
	return SchedulePrefix + "." + service + "." + event + "." + key
}

// LineItem is one line of an order.
type LineItem struct {
	SKU       string `json:"sku"`
	Quantity  int64  `json:"quantity"`
	UnitPrice int64  `json:"unit_price"`
}

// StockLine is a quantity of one SKU.
type StockLine struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

// MaxLineItems bounds the lines of one order.
const MaxLineItems = 100

// maxQuantity keeps quantity × price far from int64 overflow.
const maxQuantity = 1_000_000

// validateSKU and validateID keep the domain's wording ("sku is
// missing") without the Permanent mark: Validate's caller decides the kind.
func validateSKU(sku string) error { return unwrapKind(ValidSKU(sku)) }

func validateID(name, id string) error { return unwrapKind(ValidID(name, id)) }

func validateKey(name, key string) error { return unwrapKind(ValidKey(name, key)) }

func unwrapKind(err error) error {
	if err == nil {
		return nil
	}
	return errors.Unwrap(err)
}

// PlaceOrder asks the orders service to create an order. Placing the same
// order_id twice creates one order.
type PlaceOrder struct {
	CommandID  string     `json:"command_id,omitempty"`
	OrderID    string     `json:"order_id"`
	CustomerID string     `json:"customer_id"`
	Currency   string     `json:"currency"`
	Items      []LineItem `json:"items"`
}

// Validate reports every problem of c at once.
func (c PlaceOrder) Validate() error {
	var errs []error
	errs = append(errs, validateKey("command_id", c.CommandID))
	if err := validateID("order_id", c.OrderID); err != nil {
		errs = append(errs, err)
	}
	if err := validateID("customer_id", c.CustomerID); err != nil {
		errs = append(errs, err)
	}
	if !ValidCurrency(c.Currency) {
		errs = append(errs, fmt.Errorf("currency %q is not an ISO 4217 code", c.Currency))
	}
	if len(c.Items) == 0 {
		errs = append(errs, errors.New("items is empty"))
	}
	if len(c.Items) > MaxLineItems {
		errs = append(errs, fmt.Errorf("%d items, at most %d allowed", len(c.Items), MaxLineItems))
	}
	seen := map[string]bool{}
	for i, it := range c.Items {
		if err := validateSKU(it.SKU); err != nil {
			errs = append(errs, fmt.Errorf("items[%d]: %w", i, err))
		} else if seen[it.SKU] {
			errs = append(errs, fmt.Errorf("items[%d]: sku %q appears on more than one line", i, it.SKU))
		}
		seen[it.SKU] = true
		if it.Quantity < 1 || it.Quantity > maxQuantity {
			errs = append(errs, fmt.Errorf("items[%d]: quantity %d must be between 1 and %d", i, it.Quantity, maxQuantity))
		}
		if it.UnitPrice < 0 || it.UnitPrice > 1_000_000_000 {
			errs = append(errs, fmt.Errorf("items[%d]: unit_price %d must be between 0 and 1000000000 minor units", i, it.UnitPrice))
		}
	}
	return joinProblems(errs...)
}

// Total is the sum of the lines in minor units.
func (c PlaceOrder) Total() Money {
	var sum int64
	for _, it := range c.Items {
		sum += it.Quantity * it.UnitPrice
	}
	return Money{Amount: sum, Currency: c.Currency}
}

// CancelOrder asks the orders service to cancel an order that is not final.
type CancelOrder struct {
	CommandID string `json:"command_id,omitempty"`
	OrderID   string `json:"order_id"`
}

// Validate reports every problem of c at once.
func (c CancelOrder) Validate() error {
	return joinProblems(validateKey("command_id", c.CommandID), validateID("order_id", c.OrderID))
}

// Restock adds received stock of one SKU.
type Restock struct {
	CommandID string `json:"command_id,omitempty"`
	SKU       string `json:"sku"`
	Quantity  int64  `json:"quantity"`
}

// Validate reports every problem of c at once.
func (c Restock) Validate() error {
	var errs []error
	errs = append(errs, validateKey("command_id", c.CommandID))
	if err := validateSKU(c.SKU); err != nil {
		errs = append(errs, err)
	}
	if c.Quantity < 1 || c.Quantity > maxQuantity {
		errs = append(errs, fmt.Errorf("quantity %d must be between 1 and %d", c.Quantity, maxQuantity))
	}
	return joinProblems(errs...)
}

// OrderPlaced: a new order is PENDING. Published on orders.placed.<order>.
type OrderPlaced struct {
	OrderID    string     `json:"order_id"`
	CustomerID string     `json:"customer_id"`
	Items      []LineItem `json:"items"`
	Total      Money      `json:"total"`
	PlacedAt   time.Time  `json:"placed_at"`
}

// Validate checks the fields consumers rely on.
func (e OrderPlaced) Validate() error {
	return PlaceOrder{OrderID: e.OrderID, CustomerID: e.CustomerID, Currency: e.Total.Currency, Items: e.Items}.Validate()
}

// OrderConfirmed: the order is final and CONFIRMED.
type OrderConfirmed struct {
	OrderID    string     `json:"order_id"`
	CustomerID string     `json:"customer_id"`
	Items      []LineItem `json:"items"`
	Total      Money      `json:"total"`
}

// Validate checks the fields consumers rely on.
func (e OrderConfirmed) Validate() error {
	return joinProblems(validateID("order_id", e.OrderID), validateID("customer_id", e.CustomerID))
}

// OrderCancelled: the order is final and CANCELLED for Reason.
type OrderCancelled struct {
	OrderID    string     `json:"order_id"`
	CustomerID string     `json:"customer_id"`
	Reason     string     `json:"reason"`
	Items      []LineItem `json:"items"`
	Total      Money      `json:"total"`
}

// Validate checks the fields consumers rely on.
func (e OrderCancelled) Validate() error {
	var errs []error
	errs = append(errs, validateID("order_id", e.OrderID), validateID("customer_id", e.CustomerID))
	switch e.Reason {
	case ReasonOutOfStock, ReasonPaymentDeclined, ReasonCustomerCancelled, ReasonTimeout:
	default:
		errs = append(errs, fmt.Errorf("unknown cancellation reason %q", e.Reason))
	}
	return joinProblems(errs...)
}

// StockReserved: every line of the order is reserved.
type StockReserved struct {
	OrderID string      `json:"order_id"`
	Items   []StockLine `json:"items"`
}

// Validate checks the fields consumers rely on.
func (e StockReserved) Validate() error { return validateID("order_id", e.OrderID) }

// Shortage is a line that could not be reserved.
type Shortage struct {
	SKU       string `json:"sku"`
	Requested int64  `json:"requested"`
	Available int64  `json:"available"`
}

// StockReservationFailed: at least one line was short, so nothing of the
// order is reserved.
type StockReservationFailed struct {
	OrderID   string     `json:"order_id"`
	Reason    string     `json:"reason"`
	Shortages []Shortage `json:"shortages"`
}

// Validate checks the fields consumers rely on.
func (e StockReservationFailed) Validate() error { return validateID("order_id", e.OrderID) }

// ReservationCommitted: the reserved stock of a confirmed order is sold.
type ReservationCommitted struct {
	OrderID string      `json:"order_id"`
	Items   []StockLine `json:"items"`
}

// StockRestocked: stock was received. Published on inventory.restocked.<sku>.
type StockRestocked struct {
	SKU       string `json:"sku"`
	Quantity  int64  `json:"quantity"`
	Available int64  `json:"available"`
}

// PaymentCaptured: the order's total was charged.
type PaymentCaptured struct {
	OrderID   string `json:"order_id"`
	PaymentID string `json:"payment_id"`
	Amount    Money  `json:"amount"`
}

// Validate checks the fields consumers rely on.
func (e PaymentCaptured) Validate() error {
	var errs []error
	errs = append(errs, validateID("order_id", e.OrderID))
	if !ValidCurrency(e.Amount.Currency) {
		errs = append(errs, fmt.Errorf("currency %q is not an ISO 4217 code", e.Amount.Currency))
	}
	return joinProblems(errs...)
}

// NotificationSent: the customer was told about the order's final state.
type NotificationSent struct {
	NotificationID string `json:"notification_id"`
	OrderID        string `json:"order_id"`
	CustomerID     string `json:"customer_id"`
	Status         string `json:"status"`
	Reason         string `json:"reason,omitempty"`
	Channel        string `json:"channel"`
}

// joinProblems reports every non-nil problem in one line ("a; b"), the
// form a dead letter's reason header and an HTTP problem detail need.
func joinProblems(errs ...error) error {
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

// OrderCancelRejected: a cancel request arrived for an order that can no
// longer be cancelled. Published on orders.cancel_rejected.<order> so a
// NATS client learns why nothing happened.
type OrderCancelRejected struct {
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
}

// OrderDeadline: the order's deadline has come. The orders service
// schedules it when the order is placed; it cancels a still-pending order
// with reason timeout and changes nothing on a final one.
type OrderDeadline struct {
	OrderID  string    `json:"order_id"`
	Deadline time.Time `json:"deadline"`
}

// Validate checks the fields consumers rely on.
func (e OrderDeadline) Validate() error { return validateID("order_id", e.OrderID) }

// ReservationReleased: the stock reserved for a cancelled order is
// available again.
type ReservationReleased struct {
	OrderID string      `json:"order_id"`
	Items   []StockLine `json:"items"`
}

// PaymentDeclined: the provider refused the charge; the order is cancelled
// with reason payment_declined.
type PaymentDeclined struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// Validate checks the fields consumers rely on.
func (e PaymentDeclined) Validate() error { return validateID("order_id", e.OrderID) }

// PaymentRefunded: money captured for a cancelled order was returned.
type PaymentRefunded struct {
	OrderID   string `json:"order_id"`
	PaymentID string `json:"payment_id"`
	Amount    Money  `json:"amount"`
}

// PaymentVoided: the order was cancelled before any money was taken; the
// provider will refuse a late capture for it.
type PaymentVoided struct {
	OrderID string `json:"order_id"`
}
