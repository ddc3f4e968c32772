-- One row per order. customer_id, currency and amount stay empty until
-- orders.placed arrives; the stock reservation may come first.
-- status has no CHECK, as on SQLite (see there): the set grows and the
-- service refuses statuses it does not know when it loads a row.
CREATE TABLE payments (
    order_id        TEXT    PRIMARY KEY,
    customer_id     TEXT    NOT NULL DEFAULT '',
    currency        TEXT    NOT NULL DEFAULT '',
    amount          BIGINT  NOT NULL DEFAULT 0,
    placed          BOOLEAN NOT NULL DEFAULT FALSE,
    reserved        BOOLEAN NOT NULL DEFAULT FALSE,
    status          TEXT    NOT NULL,
    payment_id      TEXT    NOT NULL DEFAULT '',
    created_unix_ms BIGINT  NOT NULL,
    updated_unix_ms BIGINT  NOT NULL
);
CREATE INDEX payments_status ON payments (status);
