-- One row per order and final status. The id derives from both, and the
-- unique constraint states the invariant the table exists for: exactly
-- one notification per final order state.
CREATE TABLE notifications (
    notification_id TEXT    PRIMARY KEY,
    order_id        TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    customer_id     TEXT    NOT NULL,
    reason          TEXT    NOT NULL DEFAULT '',
    currency        TEXT    NOT NULL DEFAULT '',
    total_amount    INTEGER NOT NULL DEFAULT 0,
    items           TEXT    NOT NULL, -- JSON array of line items
    state           TEXT    NOT NULL CHECK (state IN ('PENDING', 'SENT')),
    channel         TEXT    NOT NULL DEFAULT '',
    created_unix_ms INTEGER NOT NULL,
    sent_unix_ms    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (order_id, status)
);
CREATE INDEX notifications_state ON notifications (state);
