CREATE TABLE inbox (
    consumer        TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    claimed_unix_ms INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
