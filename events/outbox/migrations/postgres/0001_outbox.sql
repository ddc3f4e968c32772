CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    event_id        TEXT   NOT NULL UNIQUE,
    subject         TEXT   NOT NULL,
    headers         TEXT   NOT NULL,
    payload         BYTEA  NOT NULL,
    created_unix_ms BIGINT NOT NULL
);
