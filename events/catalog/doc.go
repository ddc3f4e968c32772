// Package catalog is choreo's published contract: the Go type of every
// command and event, the subjects they travel on, the streams that hold
// them and the durable consumer names. It is the only domain-aware package
// under events/; services depend on it and never on each other.
//
// Wire shapes follow PRODUCT.md: money is integer minor units plus an ISO
// 4217 currency, never a float; event subjects are
// "<service>.<event>.<key>" with the order id (saga events) or the SKU
// (stock events) as key; commands arrive on "cmd.<service>.<action>".
//
// Every type also has a JSON Schema (schemas/*.json, embedded in the
// binary and compiled once) and an entry in the registry that Types
// returns: subject, CloudEvents type, stream, consumers, what it does and
// an example. DecodeCommand and DecodeEvent validate against the schema on
// consume, in addition to the Go checks: commands are closed
// (additionalProperties false), events are open so that a producer can add
// a field before its consumers know it.
package catalog
