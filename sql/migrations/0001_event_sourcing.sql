-- fstore 0001: event sourcing.
--
-- The successor of fstore-sql's event-sourcing half: the same tables and
-- function names, with its defects fixed (see docs/fstore-sql.md):
--   * a stream is (decider, decider_id) and decider_id is text;
--   * a stream cannot fork: unique indexes, not a racy trigger, enforce that a
--     stream has one first event and every event at most one successor;
--   * an append reads one earlier event (its previous), never the whole stream;
--   * UPDATE, DELETE and TRUNCATE are refused with an error, not ignored;
--   * every error a client can cause carries its own SQLSTATE (class FS).
--
-- SQLSTATEs raised here (the Go store maps them; SQL users may too):
--   FS001 concurrency conflict: previous_id is not the stream's last event
--   FS002 stream final: the stream was finalised, nothing may follow
--   FS003 duplicate event id: event_id exists with other content
--   FS004 immutable: events and registrations are never changed or removed
--   FS005 not registered: (decider, event, event_version) is not registered

CREATE TABLE deciders
(
    decider       TEXT        NOT NULL CHECK (char_length(decider) BETWEEN 1 AND 255),
    event         TEXT        NOT NULL CHECK (char_length(event) BETWEEN 1 AND 255),
    event_version BIGINT      NOT NULL DEFAULT 1 CHECK (event_version >= 1),
    description   TEXT        NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT deciders_pkey PRIMARY KEY (decider, event, event_version)
);

-- Offsets come from this sequence. It must keep CACHE 1: the read horizon
-- (fstore_read_horizon) relies on last_value being the newest offset handed out.
CREATE SEQUENCE events_offset_seq AS BIGINT CACHE 1;

CREATE TABLE events
(
    event         TEXT        NOT NULL,
    event_id      UUID        NOT NULL,
    event_version BIGINT      NOT NULL DEFAULT 1,
    decider       TEXT        NOT NULL,
    decider_id    TEXT        NOT NULL CHECK (char_length(decider_id) BETWEEN 1 AND 255),
    data          JSONB       NOT NULL,
    command_id    UUID        NOT NULL,
    previous_id   UUID,
    final         BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    "offset"      BIGINT      NOT NULL DEFAULT nextval('events_offset_seq'),
    CONSTRAINT events_pkey PRIMARY KEY ("offset"),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    -- Every event has at most one successor: two appends naming the same
    -- previous_id cannot both commit, however they interleave.
    CONSTRAINT events_previous_id_key UNIQUE (previous_id)
);
ALTER SEQUENCE events_offset_seq OWNED BY events."offset";

-- Every stream has at most one first event: concurrent first appends
-- (previous_id NULL) to one new stream cannot both commit.
CREATE UNIQUE INDEX events_stream_first_key ON events (decider, decider_id) WHERE previous_id IS NULL;
-- Reading one stream, and finding its last event.
CREATE INDEX events_stream_idx ON events (decider, decider_id, "offset");
-- Reading every stream of one decider in offset order.
CREATE INDEX events_decider_idx ON events (decider, "offset");

-- Checks one appended row in O(log n): its type is registered, and its
-- previous event (if any) belongs to the same stream and is not final. It
-- reads the previous event only, so append cost does not grow with the stream.
-- A registration check here instead of a foreign key: registrations are
-- immutable, and a foreign key would share-lock the one deciders row that
-- every concurrent append of a type touches.
CREATE FUNCTION fstore_check_append() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    prev RECORD;
BEGIN
    IF NOT EXISTS(SELECT 1
                  FROM deciders d
                  WHERE d.decider = NEW.decider
                    AND d.event = NEW.event
                    AND d.event_version = NEW.event_version) THEN
        RAISE EXCEPTION USING ERRCODE = 'FS005',
            MESSAGE = format('event type %L version %s is not registered for decider %L',
                             NEW.event, NEW.event_version, NEW.decider);
    END IF;
    IF NEW.previous_id IS NOT NULL THEN
        SELECT e.decider, e.decider_id, e.final
        INTO prev
        FROM events e
        WHERE e.event_id = NEW.previous_id;
        IF NOT FOUND OR prev.decider <> NEW.decider OR prev.decider_id <> NEW.decider_id THEN
            RAISE EXCEPTION USING ERRCODE = 'FS001',
                MESSAGE = format('previous_id %s is not an event of stream (%L, %L)',
                                 NEW.previous_id, NEW.decider, NEW.decider_id);
        END IF;
        IF prev.final THEN
            RAISE EXCEPTION USING ERRCODE = 'FS002',
                MESSAGE = format('stream (%L, %L) is final: no event may follow', NEW.decider, NEW.decider_id);
        END IF;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER events_check_append
    BEFORE INSERT
    ON events
    FOR EACH ROW
EXECUTE FUNCTION fstore_check_append();

-- The read horizon. A writer's offsets come from a sequence, so a transaction
-- may commit an offset lower than one another transaction already committed.
-- A reader paging the log with "offset > after" would skip it. So, before an
-- INSERT allocates any offset, the writer takes a shared transaction-scoped
-- advisory lock whose key is a lower bound of the offsets it will allocate
-- (the sequence's last value + 1, negated to keep clear of other users of
-- advisory locks). The lock is held until the writer commits or aborts.
CREATE FUNCTION fstore_lock_write_horizon() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(-(COALESCE(pg_sequence_last_value('events_offset_seq'), 0) + 1));
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_lock_write_horizon
    BEFORE INSERT
    ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION fstore_lock_write_horizon();

-- The highest offset + 1 below which every event that will ever commit has
-- committed already. First the sequence (every offset below v was allocated),
-- then the writers still running (each holds a lock keyed by a lower bound of
-- its offsets). A writer that allocated an offset below v before this call
-- took its lock before allocating, so it is seen here unless it has ended.
-- Read the events in a statement that starts after this one (READ COMMITTED):
-- its snapshot then sees every writer whose lock was gone.
CREATE FUNCTION fstore_read_horizon() RETURNS BIGINT
    LANGUAGE plpgsql
    VOLATILE AS
$$
DECLARE
    v BIGINT;
    k BIGINT;
BEGIN
    v := COALESCE(pg_sequence_last_value('events_offset_seq'), 0) + 1;
    SELECT -max((l.classid::BIGINT << 32) | l.objid::BIGINT)
    INTO k
    FROM pg_locks l
    WHERE l.locktype = 'advisory'
      AND l.objsubid = 1
      AND l.classid::BIGINT >= 2147483648 -- negative keys only
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
    RETURN LEAST(v, COALESCE(k, v));
END;
$$;

-- Events and registrations are facts: refuse every change, loudly.
CREATE FUNCTION fstore_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'FS004',
        MESSAGE = format('%s on %s is refused: fstore is append-only', TG_OP, TG_TABLE_NAME);
END;
$$;

CREATE TRIGGER events_refuse_change
    BEFORE UPDATE OR DELETE
    ON events
    FOR EACH ROW
EXECUTE FUNCTION fstore_refuse_change();
CREATE TRIGGER events_refuse_truncate
    BEFORE TRUNCATE
    ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION fstore_refuse_change();
CREATE TRIGGER deciders_refuse_change
    BEFORE UPDATE OR DELETE
    ON deciders
    FOR EACH ROW
EXECUTE FUNCTION fstore_refuse_change();
CREATE TRIGGER deciders_refuse_truncate
    BEFORE TRUNCATE
    ON deciders
    FOR EACH STATEMENT
EXECUTE FUNCTION fstore_refuse_change();

-- API: register an event type a decider may publish. Registering the same
-- (decider, event, event_version) again with the same description returns it;
-- with another description it fails with unique_violation (23505).
-- Example: SELECT * FROM register_decider_event('decider1', 'event1', 'what it means', 1);
CREATE FUNCTION register_decider_event(v_decider TEXT, v_event TEXT, v_description TEXT DEFAULT '',
                                       v_event_version BIGINT DEFAULT 1)
    RETURNS SETOF deciders
    LANGUAGE plpgsql AS
$$
BEGIN
    RETURN QUERY INSERT INTO deciders (decider, event, event_version, description)
        VALUES (v_decider, v_event, v_event_version, COALESCE(v_description, ''))
        ON CONFLICT ON CONSTRAINT deciders_pkey DO NOTHING
        RETURNING *;
    IF NOT FOUND THEN
        RETURN QUERY SELECT *
                     FROM deciders d
                     WHERE d.decider = v_decider
                       AND d.event = v_event
                       AND d.event_version = v_event_version
                       AND d.description = COALESCE(v_description, '');
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'unique_violation', CONSTRAINT = 'deciders_pkey',
                MESSAGE = format('event type %L version %s of decider %L is registered with another description',
                                 v_event, v_event_version, v_decider);
        END IF;
    END IF;
END;
$$;

-- API: append one event. previous_id is NULL for a stream's first event and
-- the stream's last event_id otherwise. Appending an event that is already
-- stored with identical content returns the stored event (a safe retry).
-- Example: SELECT * FROM append_event('event1', gen_random_uuid(), 'decider1', 'order-1', '{}',
--                                      gen_random_uuid(), NULL);
CREATE FUNCTION append_event(v_event TEXT, v_event_id UUID, v_decider TEXT, v_decider_id TEXT, v_data JSONB,
                             v_command_id UUID, v_previous_id UUID, v_event_version BIGINT DEFAULT 1,
                             v_final BOOLEAN DEFAULT FALSE)
    RETURNS SETOF events
    LANGUAGE plpgsql AS
$$
BEGIN
    RETURN QUERY INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id,
                                     previous_id, final)
        VALUES (v_event, v_event_id, v_event_version, v_decider, v_decider_id, v_data, v_command_id,
                v_previous_id, v_final)
        ON CONFLICT ON CONSTRAINT events_event_id_key DO NOTHING
        RETURNING *;
    IF NOT FOUND THEN
        RETURN QUERY SELECT *
                     FROM events e
                     WHERE e.event_id = v_event_id
                       AND e.event = v_event
                       AND e.event_version = v_event_version
                       AND e.decider = v_decider
                       AND e.decider_id = v_decider_id
                       AND e.data = v_data
                       AND e.command_id = v_command_id
                       AND e.previous_id IS NOT DISTINCT FROM v_previous_id
                       AND e.final = v_final;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'FS003',
                MESSAGE = format('event_id %s is already stored with other content', v_event_id);
        END IF;
    END IF;
END;
$$;

-- API: the events of one stream in offset order, optionally paged.
-- Example: SELECT * FROM get_events('order-1', 'decider1');
CREATE FUNCTION get_events(v_decider_id TEXT, v_decider TEXT, v_after BIGINT DEFAULT 0, v_limit INT DEFAULT NULL)
    RETURNS SETOF events
    LANGUAGE sql
    STABLE AS
$$
SELECT *
FROM events
WHERE decider = v_decider
  AND decider_id = v_decider_id
  AND "offset" > v_after
ORDER BY "offset"
LIMIT v_limit;
$$;

-- API: the last event of one stream (of that decider only).
-- Example: SELECT * FROM get_last_event('order-1', 'decider1');
CREATE FUNCTION get_last_event(v_decider_id TEXT, v_decider TEXT)
    RETURNS SETOF events
    LANGUAGE sql
    STABLE AS
$$
SELECT *
FROM events
WHERE decider = v_decider
  AND decider_id = v_decider_id
ORDER BY "offset" DESC
LIMIT 1;
$$;

-- API: page the whole log (v_decider NULL) or every stream of one decider, in
-- offset order, never skipping an event whose transaction commits late: only
-- offsets below the read horizon are returned. Call it in READ COMMITTED (the
-- default) outside an explicit REPEATABLE READ transaction.
-- Example: SELECT * FROM read_events(0, 1000);
CREATE FUNCTION read_events(v_after BIGINT DEFAULT 0, v_limit INT DEFAULT 1000, v_decider TEXT DEFAULT NULL)
    RETURNS SETOF events
    LANGUAGE plpgsql
    VOLATILE AS
$$
DECLARE
    h BIGINT := fstore_read_horizon();
BEGIN
    IF v_decider IS NULL THEN
        RETURN QUERY SELECT *
                     FROM events e
                     WHERE e."offset" > v_after
                       AND e."offset" < h
                     ORDER BY e."offset"
                     LIMIT v_limit;
    ELSE
        RETURN QUERY SELECT *
                     FROM events e
                     WHERE e.decider = v_decider
                       AND e."offset" > v_after
                       AND e."offset" < h
                     ORDER BY e."offset"
                     LIMIT v_limit;
    END IF;
END;
$$;
