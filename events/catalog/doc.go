// Package catalog is choreo's published contract: the Go type of every
// command and event, the subjects they travel on, the streams that hold
// them and the durable consumer names. It is the only domain-aware package
// under events/; services depend on it and never on each other.
//
// Wire shapes follow PRODUCT.md: money is integer minor units plus an ISO
// 4217 currency, never a float; event subjects are
// "<service>.<event>.<key>" with the order id (saga events) or the SKU
// (stock events) as key; commands arrive on "cmd.<service>.<action>".
package catalog
