-- The CHECK is the last line of defence behind the domain and the row locks:
-- a unit of work that would oversell fails and rolls back instead.
CREATE TABLE stock (
    sku             TEXT    PRIMARY KEY,
    available       BIGINT  NOT NULL DEFAULT 0,
    reserved        BIGINT  NOT NULL DEFAULT 0,
    sold            BIGINT  NOT NULL DEFAULT 0,
    updated_unix_ms BIGINT  NOT NULL,
    CHECK (available >= 0 AND reserved >= 0 AND sold >= 0)
);
-- RELEASED is allowed ahead of the domain (compensations come later) so
-- that both engines keep the same schema: on SQLite, changing a CHECK means
-- rebuilding the table.
CREATE TABLE reservations (
    order_id        TEXT    PRIMARY KEY,
    status          TEXT    NOT NULL CHECK (status IN ('RESERVED', 'COMMITTED', 'FAILED', 'RELEASED')),
    lines           TEXT    NOT NULL, -- JSON array of {sku, quantity}, one per SKU, sorted
    shortages       TEXT    NOT NULL, -- JSON array of {sku, requested, available}
    created_unix_ms BIGINT  NOT NULL,
    updated_unix_ms BIGINT  NOT NULL
);
CREATE INDEX reservations_status ON reservations (status);
