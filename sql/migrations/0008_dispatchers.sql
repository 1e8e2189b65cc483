-- fstore 0008: dispatcher heartbeats, for the operator console.
--
-- The console may fetch nothing but the API, so the API must tell whether
-- the dispatchers are alive. Each dispatcher process records a heartbeat
-- here every few seconds: who it is, where its metrics listen, when it
-- started, when it was last seen and how often it promises to beat. A
-- process is healthy while it was seen within a few of its own intervals
-- (the database's clock decides, so hosts' clocks never disagree). A process
-- that stops cleanly deletes its row; one that dies stays listed, unhealthy,
-- until the rows older than a day are pruned by the next heartbeat.
--
-- Nothing else reads or writes this table: it is small (one row a process)
-- and never in an append's path.

CREATE TABLE dispatchers
(
    -- Chosen by the process at start-up: a random UUID.
    dispatcher_id UUID        PRIMARY KEY,
    host          TEXT        NOT NULL CHECK (char_length(host) BETWEEN 1 AND 255),
    pid           INT         NOT NULL,
    -- Its FSTORE_METRICS_ADDR, as configured (host:port).
    metrics_addr  TEXT        NOT NULL CHECK (char_length(metrics_addr) BETWEEN 1 AND 255),
    version       TEXT        NOT NULL DEFAULT '',
    started_at    TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- How often it beats: it is late after a few of these.
    interval_ms   INT         NOT NULL CHECK (interval_ms > 0)
);

CREATE INDEX dispatchers_last_seen_at ON dispatchers (last_seen_at);
