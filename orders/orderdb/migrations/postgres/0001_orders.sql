CREATE TABLE orders (
    order_id        TEXT    PRIMARY KEY,
    customer_id     TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    reason          TEXT    NOT NULL DEFAULT '',
    currency        TEXT    NOT NULL,
    total_amount    BIGINT  NOT NULL,
    items           TEXT    NOT NULL, -- JSON array of line items
    stock_reserved  BOOLEAN NOT NULL DEFAULT FALSE,
    payment_id      TEXT    NOT NULL DEFAULT '',
    placed_unix_ms  BIGINT  NOT NULL,
    updated_unix_ms BIGINT  NOT NULL
);
CREATE INDEX orders_status ON orders (status);
