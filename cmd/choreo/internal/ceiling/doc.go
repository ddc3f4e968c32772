// Package ceiling measures the raw limits of the machine choreo runs on, so
// that `choreo bench` can report choreo's saga throughput as a fraction of
// what the same NATS server and the same storage can do at all:
//
//   - PublishRate: acknowledged JetStream publishes per second;
//   - CommitRate: committed two-row transactions per second;
//   - MinimalSaga: sagas per second of the same shape as choreo's happy
//     path (the same publishes, deliveries and transactions over four
//     services with a database each) with nothing else: no domain logic, no
//     JSON Schema, no CloudEvents.
//
// The probes talk to JetStream through nats.go's jetstream package and to
// the databases through database/sql directly, never through choreo's
// outbox, inbox or consumer packages: a ceiling must not inherit the
// inefficiencies of the platform it is the ceiling of. Only events/sqldb is
// used, to open databases with the same engine settings as choreo's.
//
// Every probe creates what it needs under names carrying a random run token
// (streams CEILING_…, subjects ceiling.<token>.…, tables ceiling_<token>_…),
// so concurrent runs on one server or one database never collide, and
// removes all of it before returning, also on failure.
package ceiling
