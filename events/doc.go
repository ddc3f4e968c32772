// Package events is choreo's event platform: the CloudEvents envelope that
// travels on NATS JetStream (published in structured mode, read in
// structured or binary mode by DecodeMessage), subject builders, W3C trace context carried in
// message headers, and the small set of error kinds that decide what a
// consumer does with a message it could not handle.
//
// The package and its subpackages know nothing of orders or stock. The
// mechanics live in subpackages:
//
//   - sqldb: open SQLite or PostgreSQL from a URL, a narrow dialect seam,
//     embedded ordered migrations;
//   - outbox: rows written inside the caller's transaction and a relay that
//     publishes them to JetStream;
//   - inbox: idempotent consumption, claimed in the same transaction;
//   - consumer: durable pull consumers with back-off and a dead-letter queue;
//   - dlq: the dead-letter workflow (every DLQ header; list, show, retry
//     with a loop guard, discard);
//   - history: reading a stream by sequence or time, filtered on the
//     server, a page at a time, leaving no consumer behind;
//   - streams: stream definitions and Ensure;
//   - natstest, sqltest: helpers for tests against real servers.
//
// The only domain-aware package is catalog, which holds choreo's own event
// and command types; an adopter brings their own catalog instead.
package events
