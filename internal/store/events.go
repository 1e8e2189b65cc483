package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Event is one stored event. Its JSON form is the one the API returns and the
// dispatcher posts: field names match the SQL columns.
type Event struct {
	Event        string          `json:"event" example:"order_placed" binding:"required"`
	EventID      uuid.UUID       `json:"event_id" swaggertype:"string" format:"uuid" example:"5f0e1c3a-8d4b-4c2e-9f6a-1b2c3d4e5f60" binding:"required"`
	EventVersion int64           `json:"event_version" example:"1" binding:"required"`
	Decider      string          `json:"decider" example:"order" binding:"required"`
	DeciderID    string          `json:"decider_id" example:"order-1042" binding:"required"`
	Data         json.RawMessage `json:"data" swaggertype:"object" binding:"required"`
	// Context beside the payload (who, from which request, which schema,
	// the request's trace context): always an object, {} when none.
	Metadata json.RawMessage `json:"metadata" swaggertype:"object" binding:"required"`
	// The event's tags, sorted in byte order without duplicates; [] when none.
	Tags []string `json:"tags" example:"course:c-1,student:s-7" binding:"required"`
	// The command that produced the event, chosen by the client: the events
	// of one decision share it, so it tells which command caused what.
	CommandID uuid.UUID `json:"command_id" swaggertype:"string" format:"uuid" example:"0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f" binding:"required"`
	// null for a stream's first event.
	PreviousID *uuid.UUID `json:"previous_id" swaggertype:"string" format:"uuid" extensions:"x-nullable" binding:"required"`
	// true when the event closed its stream.
	Final     bool      `json:"final" binding:"required"`
	CreatedAt time.Time `json:"created_at" format:"date-time" binding:"required"`
	// The event's position in the whole log: increasing, with gaps (an
	// append that fails uses up the offsets it took; a gap is never a lost
	// event).
	Offset int64 `json:"offset" example:"1042" format:"int64" binding:"required"`
} //@name Event

// NewEvent is an event to append. PreviousID is nil for a stream's first
// event and the stream's last event_id otherwise.
type NewEvent struct {
	Event        string
	EventID      uuid.UUID
	EventVersion int64
	Decider      string
	DeciderID    string
	Data         json.RawMessage
	// Metadata is a JSON object; nil or empty means {}.
	Metadata json.RawMessage
	// Tags are stored sorted in byte order, duplicates removed (see
	// NormalizeTags), so that a retry naming them in another order is the
	// same event.
	Tags       []string
	CommandID  uuid.UUID
	PreviousID *uuid.UUID
	Final      bool
}

// AppendResult is what an append stored.
type AppendResult struct {
	// Events are the stored events, in input order.
	Events []Event
	// Created is false when every event was stored already with identical
	// content: the append was a client's retry and changed nothing.
	Created bool
}

// AppendEvents appends evs atomically, all or nothing, in input order. They
// may belong to several streams; a later event may name an earlier one of the
// same call as its previous_id. An event stored already with identical
// content is returned as stored (a safe retry).
//
// On failure nothing is stored and the error is an *AppendError wrapping
// ErrNotRegistered, ErrConcurrencyConflict (with the stream's last event),
// ErrStreamFinal, ErrDuplicateEventID or ErrInvalid; or ErrUnavailable.
func (s *Store) AppendEvents(ctx context.Context, evs []NewEvent) (AppendResult, error) {
	// A conditional append waiting for this one while this one waits for it
	// (see AppendEventsIf): PostgreSQL cancelled one of the two.
	res, err := retryDeadlocks(func() (AppendResult, error) { return s.appendEvents(ctx, evs) })
	if err == nil && res.Created {
		s.watch.bump()
	}
	return res, err
}

func (s *Store) appendEvents(ctx context.Context, evs []NewEvent) (AppendResult, error) {
	if len(evs) == 0 {
		return AppendResult{Events: []Event{}}, nil
	}
	if len(evs) == 1 {
		return s.appends.append(ctx, evs[0])
	}
	// One statement is atomic on its own. Without ON CONFLICT, a batch that
	// repeats a stored event_id (a retry) fails whole and is answered below.
	rows, err := s.pool.Query(ctx, appendBatchSQL, columns(evs)...)
	var inserted []Event
	if err == nil {
		inserted, err = collectEvents(rows)
	}
	if err == nil {
		return inOrder(evs, inserted)
	}
	if err = interpretError(err); !isSentinel(err) {
		return AppendResult{}, err
	}
	// The one-statement insert was refused without telling which event: find
	// it by appending one event per statement, in a transaction of its own.
	res, err := s.appendOneByOne(ctx, evs)
	var appendErr *AppendError
	if errors.As(err, &appendErr) && errors.Is(err, ErrConcurrencyConflict) {
		// An identical batch racing this one (a client's retries) won: this
		// one is a replay of it, and reads as one once the other committed.
		if st, ok := s.storedAs(ctx, evs[appendErr.Index]); ok && st.identical {
			return s.appendOneByOne(ctx, evs)
		}
	}
	return res, err
}

// appendSingle appends one event in one statement, its own transaction.
func (s *Store) appendSingle(ctx context.Context, e NewEvent) (AppendResult, error) {
	res, err := s.appendOne(ctx, e)
	if err != nil && !errors.As(err, new(*AppendError)) {
		err = s.appendFailure(ctx, []NewEvent{e}, 0, err)
	}
	if errors.Is(err, ErrConcurrencyConflict) {
		// Two identical appends racing (a client's retries) can see the
		// stream's unique index before the event_id one: the loser's
		// conflict is its own event, stored by the winner.
		if st, ok := s.storedAs(ctx, e); ok && st.identical {
			return AppendResult{Events: []Event{st.Event}}, nil
		}
	}
	return res, err
}

// storedAs returns the stored event with e's event_id, if any, and whether
// it is identical to e.
func (s *Store) storedAs(ctx context.Context, e NewEvent) (storedEvent, bool) {
	stored, err := storedEvents(ctx, s.pool, []NewEvent{e})
	if err != nil {
		return storedEvent{}, false
	}
	st, ok := stored[e.EventID]
	return st, ok
}

type dbtx interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// appendOne inserts one event in one statement. Errors of that statement
// come back raw, for the caller to diagnose; an *AppendError comes back only
// for an event_id found stored with other content.
func (s *Store) appendOne(ctx context.Context, e NewEvent) (AppendResult, error) {
	rows, err := s.pool.Query(ctx, appendOneSQL, e.Event, pgUUID(&e.EventID), e.EventVersion, e.Decider, e.DeciderID,
		string(e.Data), pgUUID(&e.CommandID), pgUUID(e.PreviousID), e.Final, e.metadata(), NormalizeTags(e.Tags))
	if err != nil {
		return AppendResult{}, err
	}
	inserted, err := collectEvents(rows)
	if err != nil {
		return AppendResult{}, err
	}
	return s.completeAppend(ctx, s.pool, []NewEvent{e}, inserted)
}

// completeAppend puts inserted events in input order and fills in the ones
// that were stored already, refusing any whose stored content differs.
func (s *Store) completeAppend(ctx context.Context, q dbtx, evs []NewEvent, inserted []Event) (AppendResult, error) {
	byID := make(map[uuid.UUID]Event, len(evs))
	for _, e := range inserted {
		byID[e.EventID] = e
	}
	res := AppendResult{Events: make([]Event, len(evs)), Created: len(inserted) > 0}
	if len(inserted) < len(evs) {
		var missing []NewEvent
		for _, e := range evs {
			if _, ok := byID[e.EventID]; !ok {
				missing = append(missing, e)
			}
		}
		stored, err := storedEvents(ctx, q, missing)
		if err != nil {
			return AppendResult{}, err
		}
		for _, e := range missing {
			if st, ok := stored[e.EventID]; ok && st.identical {
				byID[e.EventID] = st.Event
			}
		}
	}
	for i, e := range evs {
		got, ok := byID[e.EventID]
		if !ok {
			return AppendResult{}, newAppendError(i, e, ErrDuplicateEventID)
		}
		res.Events[i] = got
	}
	return res, nil
}

// inOrder returns the inserted events in the order of evs.
func inOrder(evs []NewEvent, inserted []Event) (AppendResult, error) {
	byID := make(map[uuid.UUID]Event, len(inserted))
	for _, e := range inserted {
		byID[e.EventID] = e
	}
	res := AppendResult{Events: make([]Event, len(evs)), Created: true}
	for i, e := range evs {
		got, ok := byID[e.EventID]
		if !ok {
			return AppendResult{}, fmt.Errorf("store: event %s missing from the insert's result", e.EventID)
		}
		res.Events[i] = got
	}
	return res, nil
}

type storedEvent struct {
	Event
	identical bool
}

func storedEvents(ctx context.Context, q dbtx, evs []NewEvent) (map[uuid.UUID]storedEvent, error) {
	rows, err := q.Query(ctx, storedSQL, columns(evs)...)
	if err != nil {
		return nil, interpretError(err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storedEvent, error) {
		var st storedEvent
		var err error
		st.Event, err = scanEvent(r, &st.identical)
		return st, err
	})
	if err != nil {
		return nil, interpretError(err)
	}
	out := make(map[uuid.UUID]storedEvent, len(list))
	for _, st := range list {
		out[st.EventID] = st
	}
	return out, nil
}

// appendOneByOne appends the events one statement each, pipelined in one
// round trip inside one transaction, so that a failure names its event. If
// every event goes through (the race that failed the first attempt is over),
// the transaction commits: the append is just as atomic.
func (s *Store) appendOneByOne(ctx context.Context, evs []NewEvent) (AppendResult, error) {
	var res AppendResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		res, err = s.insertOneByOne(ctx, tx, evs)
		return err
	})
	return res, err
}

// insertOneByOne inserts the events in tx one statement each, pipelined in
// one round trip, skipping (and checking) those stored already.
func (s *Store) insertOneByOne(ctx context.Context, tx pgx.Tx, evs []NewEvent) (AppendResult, error) {
	batch := &pgx.Batch{}
	for i := range evs {
		batch.Queue(appendSQL, columns(evs[i:i+1])...)
	}
	results := tx.SendBatch(ctx, batch)
	var inserted []Event
	for i := range evs {
		rows, err := results.Query()
		if err == nil {
			var got []Event
			got, err = collectEvents(rows)
			inserted = append(inserted, got...)
		}
		if err != nil {
			_ = results.Close()
			return AppendResult{}, s.appendFailure(ctx, evs, i, err)
		}
	}
	if err := results.Close(); err != nil {
		return AppendResult{}, interpretError(err)
	}
	return s.completeAppend(ctx, tx, evs, inserted)
}

// appendFailure turns the error of appending evs[i] into an *AppendError,
// adding what the client needs to recover: the stream's last event on a
// conflict. It runs outside the failed transaction.
func (s *Store) appendFailure(ctx context.Context, evs []NewEvent, i int, err error) error {
	err = interpretError(err)
	e := evs[i]
	appendErr := newAppendError(i, e, err)
	switch {
	case errors.Is(err, ErrConcurrencyConflict), errors.Is(err, ErrStreamFinal):
		// An event_id stored with other content is the real cause: report it.
		if st, ok := s.storedAs(ctx, e); ok && !st.identical {
			appendErr.Err = ErrDuplicateEventID
			return appendErr
		}
		last, lookErr := s.LastEvent(ctx, e.Decider, e.DeciderID)
		if lookErr == nil {
			appendErr.LastEventID = &last.EventID
			if last.Final {
				appendErr.Err = ErrStreamFinal
			}
		}
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	if !isSentinel(appendErr.Err) {
		return err
	}
	return appendErr
}

func newAppendError(i int, e NewEvent, err error) *AppendError {
	return &AppendError{Index: i, EventID: e.EventID, Event: e.Event, EventVersion: e.EventVersion,
		Decider: e.Decider, DeciderID: e.DeciderID, Err: err}
}

func isSentinel(err error) bool {
	for _, s := range []error{ErrNotRegistered, ErrConcurrencyConflict, ErrStreamFinal, ErrDuplicateEventID, ErrInvalid} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// ReadQuery selects events to read. With Decider and DeciderID: one stream.
// With Decider alone: every stream of that decider. With neither: the log.
// With Tags, only the events that carry every one of them.
type ReadQuery struct {
	Decider   string
	DeciderID string
	Tags      []string
	// After is an exclusive offset cursor.
	After int64
	// Limit bounds the number of events returned (1..10000).
	Limit int
	// Events are event types, OR-ed; empty: every type.
	Events []string
}

// ReadEvents returns events in offset order. Reads of a decider or of the
// whole log stop below the read horizon: an event whose transaction is still
// running may take a lower offset than one already committed, and a reader
// that moved its cursor past it would never see it.
//
// A stream is read on the primary, where its decider decides; a decider or
// the whole log may be read on the standby (WithReadReplica), a little
// behind the primary.
func (s *Store) ReadEvents(ctx context.Context, q ReadQuery) ([]Event, error) {
	if len(q.Events) > 0 {
		return s.readTypes(ctx, q) // and its tags, if any
	}
	if len(q.Tags) > 0 {
		return s.readTagged(ctx, q)
	}
	if q.DeciderID == "" {
		sql, args := `SELECT `+eventColumns+` FROM read_events($1, $2)`, []any{q.After, q.Limit}
		if q.Decider != "" {
			sql, args = `SELECT `+eventColumns+` FROM read_events($1, $2, $3)`, append(args, q.Decider)
		}
		if evs, _, served, err := s.fromStandby(ctx, sql, args...); served || err != nil {
			return evs, err
		}
		return s.queryEvents(ctx, sql, args...)
	}
	// Within one stream offsets commit in order: each event names the
	// previous one, which must be committed first. No horizon needed.
	return s.queryEvents(ctx, `SELECT `+eventColumns+` FROM events
		WHERE decider = $1 AND decider_id = $2 AND "offset" > $3 ORDER BY "offset" LIMIT $4`,
		q.Decider, q.DeciderID, q.After, q.Limit)
}

// queryEvents runs a query of events on the primary.
func (s *Store) queryEvents(ctx context.Context, sql string, args ...any) ([]Event, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, interpretError(err)
	}
	evs, err := collectEvents(rows)
	if err != nil {
		return nil, interpretError(err)
	}
	return evs, nil
}

// readTagged is ReadEvents with tags. A decider or the log is read below the
// read horizon: on a standby, one sampled on the primary (fromStandby); on
// the primary, taken in a statement of its own before the read (as
// read_events does), in the same round trip: the read takes it from the
// transaction-local setting the first statement made.
func (s *Store) readTagged(ctx context.Context, q ReadQuery) ([]Event, error) {
	tags := NormalizeTags(q.Tags)
	if q.DeciderID != "" {
		return s.queryEvents(ctx, `SELECT `+eventColumns+` FROM events WHERE decider = $1::text AND decider_id = $2::text
			AND "offset" > $3::bigint AND tags <> '{}' AND tags @> $4::text[] ORDER BY "offset" LIMIT $5::int`,
			q.Decider, q.DeciderID, q.After, tags, q.Limit)
	}
	const below = `SELECT ` + eventColumns + ` FROM events WHERE "offset" > $1::bigint
			AND "offset" < %s AND tags <> '{}' AND tags @> $2::text[]
			AND ($3::text = '' OR decider = $3::text) ORDER BY "offset" LIMIT $4::int`
	args := []any{q.After, tags, q.Decider, q.Limit}
	if evs, _, served, err := s.fromStandby(ctx, fmt.Sprintf(below, `(SELECT fstore_read_horizon())`), args...); served || err != nil {
		return evs, err
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('fstore.horizon', fstore_read_horizon()::text, true)`)
	b.Queue(fmt.Sprintf(below, `current_setting('fstore.horizon')::bigint`), args...)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, interpretError(err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, interpretError(err)
	}
	evs, err := collectEvents(rows)
	if err != nil {
		return nil, interpretError(err)
	}
	return evs, nil
}

// LastEvent returns the last event of the stream (decider, deciderID);
// ErrNotFound when the stream is empty.
func (s *Store) LastEvent(ctx context.Context, decider, deciderID string) (Event, error) {
	e, err := scanEvent(s.pool.QueryRow(ctx, `SELECT `+eventColumns+` FROM events
		WHERE decider = $1 AND decider_id = $2 ORDER BY "offset" DESC LIMIT 1`, decider, deciderID))
	switch err = interpretError(err); {
	case errors.Is(err, ErrNotFound):
		return Event{}, fmt.Errorf("stream (%q, %q) has no events: %w", decider, deciderID, err)
	case err != nil:
		return Event{}, fmt.Errorf("last event of stream (%q, %q): %w", decider, deciderID, err)
	}
	return e, nil
}

// GetEvent returns the event with this event_id; ErrNotFound when none.
func (s *Store) GetEvent(ctx context.Context, id uuid.UUID) (Event, error) {
	e, err := scanEvent(s.pool.QueryRow(ctx, `SELECT `+eventColumns+` FROM events WHERE event_id = $1`, id))
	if err != nil {
		if err = interpretError(err); errors.Is(err, ErrNotFound) {
			err = describe(err, "event %s does not exist", id)
		}
		return Event{}, err
	}
	return e, nil
}
