package store

import (
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// The statements that store and read events, and the conversions between
// events and their columns.

// NormalizeTags returns tags as they are stored: sorted in byte order (Go's
// string order, PostgreSQL's COLLATE "C"), without duplicates. It does not
// modify tags.
func NormalizeTags(tags []string) []string {
	if len(tags) == 0 {
		return []string{}
	}
	out := slices.Clone(tags)
	slices.Sort(out)
	return slices.Compact(out)
}

// metadata is the event's metadata as stored: {} when none was given.
func (e NewEvent) metadata() string {
	if len(e.Metadata) == 0 {
		return "{}"
	}
	return string(e.Metadata)
}

const eventColumns = `event, event_id, event_version, decider, decider_id, data, command_id, previous_id, final, created_at, "offset", metadata, tags`

// insertFromArrays inserts events from parallel arrays, in input order. An
// event's tags are a slice of one flat array ($11, bounds $12 and $13): SQL
// arrays cannot be ragged, and slicing costs less than parsing a literal.
const insertFromArrays = `
INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id, previous_id, final,
                    metadata, tags)
SELECT i.event, i.event_id::uuid, i.event_version, i.decider, i.decider_id, i.data::jsonb, i.command_id::uuid,
       i.previous_id::uuid, i.final, i.metadata::jsonb, ($11::text[])[i.tags_from:i.tags_to]
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::bool[], $10::text[], $12::int[], $13::int[]) WITH ORDINALITY
         AS i(event, event_id, event_version, decider, decider_id, data, command_id, previous_id, final, metadata,
              tags_from, tags_to, ord)
ORDER BY i.ord
`

// appendSQL skips an event whose event_id is stored already (ON CONFLICT):
// the caller then checks that the stored one is identical.
const appendSQL = insertFromArrays + `ON CONFLICT ON CONSTRAINT events_event_id_key DO NOTHING
RETURNING ` + eventColumns

// appendBatchSQL is for batches, all or nothing: a stored event_id fails it.
const appendBatchSQL = insertFromArrays + `RETURNING ` + eventColumns

// appendOneSQL is appendSQL for one event: PostgreSQL executes it about a
// quarter cheaper than unnesting one-element arrays (measured with pgbench).
const appendOneSQL = `
INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id, previous_id, final,
                    metadata, tags)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT ON CONSTRAINT events_event_id_key DO NOTHING
RETURNING ` + eventColumns

// storedSQL returns the stored events with these event_ids, each with whether
// it is identical to the one given: the same content, metadata aside from the
// trace context a retry brings anew (fstore_retry_metadata, 0004).
var storedSQL = `
SELECT ` + prefixed("e.") + `,
       (e.event = i.event AND e.event_version = i.event_version AND e.decider = i.decider
        AND e.decider_id = i.decider_id AND e.data = i.data::jsonb AND e.command_id = i.command_id::uuid
        AND e.previous_id IS NOT DISTINCT FROM i.previous_id::uuid AND e.final = i.final
        AND e.tags = ($11::text[])[i.tags_from:i.tags_to]
        AND fstore_retry_metadata(e.metadata) = fstore_retry_metadata(i.metadata::jsonb)) AS identical
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::bool[], $10::text[], $12::int[], $13::int[])
         AS i(event, event_id, event_version, decider, decider_id, data, command_id, previous_id, final, metadata,
              tags_from, tags_to)
JOIN events e ON e.event_id = i.event_id::uuid`

func prefixed(p string) string {
	return p + `event, ` + p + `event_id, ` + p + `event_version, ` + p + `decider, ` + p + `decider_id, ` +
		p + `data, ` + p + `command_id, ` + p + `previous_id, ` + p + `final, ` + p + `created_at, ` + p + `"offset", ` +
		p + `metadata, ` + p + `tags`
}

// columns turns events into the parallel arrays appendSQL and storedSQL take.
func columns(evs []NewEvent) []any {
	n := len(evs)
	var (
		names, ids, deciders, deciderIDs, data, commands, metadata = make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		versions         = make([]int64, n)
		previous         = make([]*string, n)
		finals           = make([]bool, n)
		tags             []string
		tagsFrom, tagsTo = make([]int64, n), make([]int64, n)
	)
	for i, e := range evs {
		names[i], ids[i], versions[i] = e.Event, e.EventID.String(), e.EventVersion
		deciders[i], deciderIDs[i], data[i] = e.Decider, e.DeciderID, string(e.Data)
		commands[i], finals[i], metadata[i] = e.CommandID.String(), e.Final, e.metadata()
		if e.PreviousID != nil {
			p := e.PreviousID.String()
			previous[i] = &p
		}
		// SQL arrays count from 1; an empty slice has to < from.
		tagsFrom[i] = int64(len(tags) + 1)
		tags = append(tags, NormalizeTags(e.Tags)...)
		tagsTo[i] = int64(len(tags))
	}
	if tags == nil {
		tags = []string{}
	}
	return []any{names, ids, versions, deciders, deciderIDs, data, commands, previous, finals, metadata, tags,
		tagsFrom, tagsTo}
}

// pgUUID passes a UUID as its 16 bytes: uuid.UUID would go through
// driver.Valuer and a string, a measurable cost on the append path.
func pgUUID(id *uuid.UUID) pgtype.UUID {
	if id == nil {
		return pgtype.UUID{}
	}
	return pgtype.UUID{Bytes: *id, Valid: true}
}

// scanEvent reads eventColumns, then extra. UUIDs are read as their 16
// bytes: into uuid.UUID pgx would go through a string (database/sql's
// Scanner), a measurable cost on a page of events.
func scanEvent(row pgx.Row, extra ...any) (Event, error) {
	var e Event
	var data, metadata []byte
	var id, command, previous pgtype.UUID
	dest := append([]any{&e.Event, &id, &e.EventVersion, &e.Decider, &e.DeciderID, &data,
		&command, &previous, &e.Final, &e.CreatedAt, &e.Offset, &metadata, &e.Tags}, extra...)
	if err := row.Scan(dest...); err != nil {
		return Event{}, err
	}
	e.EventID, e.CommandID = id.Bytes, command.Bytes
	if previous.Valid {
		p := uuid.UUID(previous.Bytes)
		e.PreviousID = &p
	}
	e.Data, e.Metadata = data, metadata
	if e.Tags == nil {
		e.Tags = []string{}
	}
	return e, nil
}

func collectEvents(rows pgx.Rows) ([]Event, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) { return scanEvent(r) })
}
