-- Inventory now handles every input of the saga in any arrival order, so a
-- reservation records which of its order's events it has seen, and two
-- statuses stand for an order whose placement has not been seen yet:
-- AWAITING_PLACEMENT (confirmed first) and CANCELLED (a tombstone: cancelled
-- first, so the placement reserves nothing).
--
-- SQLite cannot change a CHECK in place, so the table is rebuilt, the way
-- https://www.sqlite.org/lang_altertable.html#otheralter describes; the
-- migration runs in one transaction and nothing refers to the table. Every
-- existing row was created by a placement; a COMMITTED one was confirmed.
-- RELEASED rows cannot exist yet (no code wrote them), but are mapped anyway.
-- The defaults are what the previous version would write (it only ever
-- inserts on a placement); the store reads the inputs a status implies as
-- seen.
CREATE TABLE reservations_v2 (
    order_id        TEXT    PRIMARY KEY,
    status          TEXT    NOT NULL CHECK (status IN
        ('RESERVED', 'COMMITTED', 'FAILED', 'RELEASED', 'AWAITING_PLACEMENT', 'CANCELLED')),
    placed          INTEGER NOT NULL DEFAULT 1 CHECK (placed IN (0, 1)),
    confirmed       INTEGER NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1)),
    cancelled       INTEGER NOT NULL DEFAULT 0 CHECK (cancelled IN (0, 1)),
    lines           TEXT    NOT NULL, -- JSON array of {sku, quantity}, one per SKU, sorted
    shortages       TEXT    NOT NULL, -- JSON array of {sku, requested, available}
    created_unix_ms INTEGER NOT NULL,
    updated_unix_ms INTEGER NOT NULL
);
INSERT INTO reservations_v2
    (order_id, status, placed, confirmed, cancelled, lines, shortages, created_unix_ms, updated_unix_ms)
SELECT order_id, status, 1, status = 'COMMITTED', status = 'RELEASED', lines, shortages, created_unix_ms, updated_unix_ms
FROM reservations;
DROP TABLE reservations;
ALTER TABLE reservations_v2 RENAME TO reservations;
CREATE INDEX reservations_status ON reservations (status);
