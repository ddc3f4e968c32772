-- One row per order. customer_id, currency and amount stay empty until
-- orders.placed arrives; the stock reservation may come first.
-- status has no CHECK: the set grows (declined, refunded, voided) and
-- SQLite cannot change a CHECK without rebuilding the table; the service
-- refuses statuses it does not know when it loads a row.
CREATE TABLE payments (
    order_id        TEXT    PRIMARY KEY,
    customer_id     TEXT    NOT NULL DEFAULT '',
    currency        TEXT    NOT NULL DEFAULT '',
    amount          INTEGER NOT NULL DEFAULT 0,
    placed          INTEGER NOT NULL DEFAULT 0,
    reserved        INTEGER NOT NULL DEFAULT 0,
    status          TEXT    NOT NULL,
    payment_id      TEXT    NOT NULL DEFAULT '',
    created_unix_ms INTEGER NOT NULL,
    updated_unix_ms INTEGER NOT NULL
);
CREATE INDEX payments_status ON payments (status);
