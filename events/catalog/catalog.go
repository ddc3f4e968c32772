package catalog

import (
	"time"

	"github.com/choreo-dev/choreo/events/streams"
)

// Service names: the first token of their subjects, their stream's name in
// lower case, their durable consumer name and their CloudEvents source.
const (
	Orders        = "orders"
	Inventory     = "inventory"
	Payments      = "payments"
	Notifications = "notifications"
)

// Services lists every service.
var Services = []string{Orders, Inventory, Payments, Notifications}

// Stream names.
const (
	StreamOrders        = "ORDERS"
	StreamInventory     = "INVENTORY"
	StreamPayments      = "PAYMENTS"
	StreamNotifications = "NOTIFICATIONS"
	StreamCommands      = "COMMANDS"
	StreamDLQ           = "DLQ"
)

// Streams declares every stream choreo uses.
var Streams = []streams.Spec{
	// Schedules: orders' deadlines are scheduled messages (nats-server
	// 2.12+), held on schedules.orders.> until they fire onto orders.>.
	{Name: StreamOrders, Subjects: []string{"orders.>", SchedulePrefix + ".orders.>"}, Description: "events published by the orders service, and its scheduled deadlines", Schedules: true},
	{Name: StreamInventory, Subjects: []string{"inventory.>"}, Description: "events published by the inventory service"},
	{Name: StreamPayments, Subjects: []string{"payments.>"}, Description: "events published by the payments service"},
	{Name: StreamNotifications, Subjects: []string{"notifications.>"}, Description: "events published by the notifications service"},
	{Name: StreamCommands, Subjects: []string{"cmd.>"}, Description: "commands from outside: storefront, warehouse, operators"},
	{Name: StreamDLQ, Subjects: []string{DLQPrefix + ".>"}, Description: "messages a consumer could not handle, with the reason"},
}

// Retention is how much each kind of stream keeps.
type Retention struct {
	// Events bounds the streams of events and commands.
	Events streams.Limits
	// DLQ bounds the dead-letter queue, which keeps messages longer: they
	// wait for a person.
	DLQ streams.Limits
}

// DefaultRetention is what the streams keep unless told otherwise: sized
// for one machine (choreo up), where the embedded NATS server shares the
// process's memory. The count and size limits bound that memory whatever
// the rate: the server keeps an index entry, about 150 bytes, per subject
// a stream holds (every saga event has a subject of its own), and in
// memory the block it writes and the block it trims of every busy stream;
// under 32MiB a stream's blocks are 4MiB instead of 8MiB (the server
// sizes them by MaxBytes). 30MiB holds about 30,000 of choreo's events.
// The age limits bound how far back trace and replay can look when the
// system is quiet. A cluster keeps more (deploy/ sets 1GiB).
var DefaultRetention = Retention{
	Events: streams.Limits{MaxAge: 24 * time.Hour, MaxMsgs: 100_000, MaxBytes: 30 << 20},
	DLQ:    streams.Limits{MaxAge: 7 * 24 * time.Hour, MaxMsgs: 100_000},
}

// StreamSpecs returns Streams with the limits of r.
func StreamSpecs(r Retention) []streams.Spec {
	out := make([]streams.Spec, len(Streams))
	for i, s := range Streams {
		s.Limits = r.Events
		if s.Name == StreamDLQ {
			s.Limits = r.DLQ
		}
		out[i] = s
	}
	return out
}

// Source returns the CloudEvents source of a service's events.
func Source(service string) string { return "/choreo/" + service }

// DLQPrefix is the first token of every dead letter's subject.
const DLQPrefix = "dlq"

// DLQSubject returns the prefix of a service's dead letters: "dlq.<service>".
func DLQSubject(service string) string { return DLQPrefix + "." + service }
