-- Retention deletes claims older than a horizon, oldest first; the index
-- makes finding them cheap. Claims are inserted in time order, so the
-- index grows at its right edge only.
CREATE INDEX inbox_claimed ON inbox (claimed_unix_ms);
