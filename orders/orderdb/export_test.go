package orderdb

// ListSQL exposes the listing statement to the EXPLAIN test.
var ListSQL = listSQL
