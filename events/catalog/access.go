package catalog

import (
	"slices"
	"strings"

	"github.com/choreo-dev/choreo/events/natsauth"
)

// The NATS users that are not services.
const (
	// RoleOperator is the operator's user (choreo's tools, stream setup,
	// dlq retry): every right.
	RoleOperator = "operator"
	// RoleClient is who sends commands from outside (the storefront, the
	// warehouse, the nats CLI): it publishes commands and reads the
	// streams, and never publishes an event.
	RoleClient = "client"
)

// NATSRoles returns the NATS users of choreo and what each may do, derived
// from the catalog so that permissions cannot drift from the subjects: a
// user per service, the client and the operator.
func NATSRoles() []natsauth.Role {
	roles := make([]natsauth.Role, 0, len(Services)+2)
	for _, s := range Services {
		roles = append(roles, ServiceRole(s))
	}
	return append(roles,
		natsauth.Role{Name: RoleClient, Publish: []string{CommandSubject("*", ">"), StatusSubject("*")}, Reader: true, Protected: allDurables()},
		natsauth.Role{Name: RoleOperator, All: true},
	)
}

// StatusSubject is where a service answers requests for its status.
func StatusSubject(service string) string { return "choreo." + service + ".status" }

// MicroPrefix begins the NATS micro service name of every choreo service.
const MicroPrefix = "choreo-"

// MicroName is the NATS micro service name of a service's instances.
func MicroName(service string) string { return MicroPrefix + service }

// SiblingsSubject is where every live instance of service describes
// itself ($SRV.INFO of its micro service): a starting instance asks it to
// check its siblings share its store.
func SiblingsSubject(service string) string { return "$SRV.INFO." + MicroName(service) }

// ServiceRole is what service does on the bus: it publishes its events
// (<service>.>), its schedules (schedules.<service>.>, when its stream
// holds any) and its dead letters (dlq.<service>.>); it reads, through a
// durable consumer named after it, every stream holding a type it
// consumes; it reads the information of every stream (at start a service
// checks each is as declared, and counts its dead letters), never changes
// one; it answers requests to its micro endpoints, and subscribes to
// nothing else. It asks its own siblings who they are (SiblingsSubject).
func ServiceRole(service string) natsauth.Role {
	r := natsauth.Role{Name: service, Respond: true, Publish: []string{service + ".>", SiblingsSubject(service)},
		// It receives only replies (JetStream API answers, publish acks,
		// its consumers' messages, all on inboxes) and requests to its
		// micro endpoints. Receiving nothing else, it can answer nothing
		// else: another's publish or API request is not its to ack.
		Subscribe: []string{"_INBOX.>", "$SRV.>", StatusSubject(service)}}
	for _, s := range Streams {
		for _, subj := range s.Subjects {
			if strings.HasPrefix(subj, SchedulePrefix+"."+service+".") {
				r.Publish = append(r.Publish, subj)
			}
		}
		r.Streams = append(r.Streams, s.Name)
	}
	r.Publish = append(r.Publish, DLQSubject(service)+".>")
	r.Consumers = durablesOf(service)
	return r
}

// durablesOf lists the durable consumers service reads through, as
// ConsumerOf names them: one named after the service on every stream
// holding a type it consumes, and one per command it takes
// (CommandDurable).
func durablesOf(service string) []natsauth.Consumer {
	read := map[string]bool{}
	var commands []natsauth.Consumer
	for _, t := range registry {
		if !slices.Contains(t.Consumers, service) {
			continue
		}
		read[t.Stream] = true
		if action, ok := strings.CutPrefix(t.Subject, CommandSubject(service, "")); ok && t.Kind == KindCommand {
			commands = append(commands, natsauth.Consumer{Stream: t.Stream, Durable: CommandDurable(service, action)})
		}
	}
	var out []natsauth.Consumer
	for _, s := range Streams { // in the catalog's order: a stable config
		if read[s.Name] {
			out = append(out, natsauth.Consumer{Stream: s.Name, Durable: service})
		}
	}
	return append(out, commands...)
}

// allDurables names every durable consumer of every service: none of them
// is a client's to use.
func allDurables() []string {
	var out []string
	for _, s := range Services {
		for _, c := range durablesOf(s) {
			if !slices.Contains(out, c.Durable) {
				out = append(out, c.Durable)
			}
		}
	}
	return out
}
