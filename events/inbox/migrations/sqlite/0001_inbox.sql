-- WITHOUT ROWID: the claim is looked up and inserted by its primary key
-- only, so the table is that one B-tree instead of a rowid table plus an
-- index; every Apply writes one page fewer.
CREATE TABLE inbox (
    consumer        TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    claimed_unix_ms INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
