package catalog

// OrderEvent is the data of an event about one order: every event but
// inventory.restocked, which is about a SKU. Order returns the order's id,
// so that a handler can find the order of any such event.
type OrderEvent interface{ Order() string }

func (e OrderPlaced) Order() string            { return e.OrderID }
func (e OrderConfirmed) Order() string         { return e.OrderID }
func (e OrderCancelled) Order() string         { return e.OrderID }
func (e OrderCancelRejected) Order() string    { return e.OrderID }
func (e OrderDeadline) Order() string          { return e.OrderID }
func (e StockReserved) Order() string          { return e.OrderID }
func (e StockReservationFailed) Order() string { return e.OrderID }
func (e ReservationCommitted) Order() string   { return e.OrderID }
func (e ReservationReleased) Order() string    { return e.OrderID }
func (e PaymentCaptured) Order() string        { return e.OrderID }
func (e PaymentDeclined) Order() string        { return e.OrderID }
func (e PaymentRefunded) Order() string        { return e.OrderID }
func (e PaymentVoided) Order() string          { return e.OrderID }
func (e NotificationSent) Order() string       { return e.OrderID }
