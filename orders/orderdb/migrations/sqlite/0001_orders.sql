CREATE TABLE orders (
    order_id        TEXT    PRIMARY KEY,
    customer_id     TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    reason          TEXT    NOT NULL DEFAULT '',
    currency        TEXT    NOT NULL,
    total_amount    INTEGER NOT NULL,
    items           TEXT    NOT NULL, -- JSON array of line items
    stock_reserved  INTEGER NOT NULL DEFAULT 0,
    payment_id      TEXT    NOT NULL DEFAULT '',
    placed_unix_ms  INTEGER NOT NULL,
    updated_unix_ms INTEGER NOT NULL
);
CREATE INDEX orders_status ON orders (status);
