-- Inventory now handles every input of the saga in any arrival order, so a
-- reservation records which of its order's events it has seen, and two
-- statuses stand for an order whose placement has not been seen yet:
-- AWAITING_PLACEMENT (confirmed first) and CANCELLED (a tombstone: cancelled
-- first, so the placement reserves nothing).
--
-- Every existing row was created by a placement; a COMMITTED one was
-- confirmed. RELEASED rows cannot exist yet (no code wrote them), but are
-- mapped anyway. The defaults are what a replica of the previous version
-- writes (it only ever inserts on a placement), so it keeps working during
-- a rolling deploy; the store reads the inputs a status implies as seen.
-- The column CHECK of 0001 has PostgreSQL's default name; dropping it by
-- that name fails loudly if it ever had another.
ALTER TABLE reservations
    ADD COLUMN placed    BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN confirmed BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN cancelled BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE reservations SET confirmed = (status = 'COMMITTED'), cancelled = (status = 'RELEASED');
ALTER TABLE reservations
    DROP CONSTRAINT reservations_status_check,
    ADD CONSTRAINT reservations_status_check CHECK (status IN
        ('RESERVED', 'COMMITTED', 'FAILED', 'RELEASED', 'AWAITING_PLACEMENT', 'CANCELLED'));
