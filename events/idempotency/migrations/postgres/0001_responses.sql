CREATE TABLE idempotent_responses (
    key_hash        TEXT    PRIMARY KEY, -- route, client and key, hashed
    fingerprint     TEXT    NOT NULL,    -- hash of the request
    started_unix_ms BIGINT  NOT NULL,    -- when the request holding the key began
    status          INTEGER NOT NULL DEFAULT 0, -- 0 while in flight
    header          TEXT    NOT NULL DEFAULT '', -- JSON of the response's header
    body            BYTEA
);
CREATE INDEX idempotent_responses_started ON idempotent_responses (started_unix_ms);
