package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Dynamic consistency boundaries: a decision reads the events it depends on
// with a Query, across streams, and appends on a Condition: only if no event
// matching the query was stored after the position its read returned. The
// SQL side (sql/migrations/0003_dcb.sql) explains why this is race-free.

// Query selects events by type, tags and payload: the query model of the DCB
// specification (dcb.events), with matches on data besides. Items are OR-ed;
// an event matches an item when its type is one of Types (when given), it
// carries every one of Tags (when given) and its data contains every one of
// Matches (JSON containment, when given). An item with none of them matches
// every event.
type Query struct {
	Items []QueryItem `json:"items"`
}

// QueryItem is one alternative of a Query.
type QueryItem struct {
	Types   []string          `json:"types,omitempty"`
	Tags    []string          `json:"tags,omitempty"`
	Matches []json.RawMessage `json:"matches,omitempty"`
}

// Condition makes an append conditional: it fails with a *ConditionError
// when an event matching Query has an offset above After.
type Condition struct {
	Query Query
	// After is the position a read of Query returned.
	After int64
}

// ConditionError tells which event failed a condition.
type ConditionError struct {
	// Offset of the lowest event above the condition's position that matches
	// its query.
	Offset int64
	After  int64
}

func (e *ConditionError) Error() string {
	return fmt.Sprintf("the event at offset %d matches the condition's query and is above its position %d: read again and decide again",
		e.Offset, e.After)
}

func (e *ConditionError) Unwrap() error { return ErrConditionFailed }

// QueryResult is one page of a query.
type QueryResult struct {
	Events []Event
	// Position is the highest offset this read covers: every event matching
	// the query at or below it is in this page or an earlier one. When the
	// page is full it is the page's last offset, so a condition taken from
	// an unfinished read fails rather than ignore unread events.
	Position int64
	// More is true when the page is full: read on with After = Position.
	More bool
}

// QueryEvents returns the events matching q with an offset above after, in
// offset order, at most limit (1..10000), up to the read horizon. A malformed
// query is an error wrapping ErrInvalid.
func (s *Store) QueryEvents(ctx context.Context, q Query, after int64, limit int) (QueryResult, error) {
	if err := q.check(); err != nil {
		return QueryResult{}, err
	}
	query, err := queryJSON(q)
	if err != nil {
		return QueryResult{}, err
	}
	// On a standby, below a sampled horizon (query_position is one less):
	// a position from there is an older one of the primary's, as correct a
	// condition on the primary, if more likely to fail.
	evs, horizon, served, err := s.fromStandby(ctx, `SELECT `+eventColumns+` FROM query_events($1, $2, $3)`, query, after, limit)
	if err != nil {
		return QueryResult{}, err
	}
	position := horizon - 1
	if !served {
		if position, evs, err = s.queryPrimary(ctx, q, query, after, limit); err != nil {
			return QueryResult{}, err
		}
	}
	res := QueryResult{Events: evs, Position: position}
	if len(evs) == limit {
		res.Position, res.More = evs[len(evs)-1].Offset, true
	}
	return res, nil
}

// queryPrimary reads a query's events on the primary, with the position
// they were read up to: the position first, read after this call began
// (shared with the queries that need one at the same time: see positions),
// so that the read's snapshot sees every event at or below it. A tag query
// is answered by fstore_tag_events (0007).
func (s *Store) queryPrimary(ctx context.Context, q Query, query string, after int64, limit int) (int64, []Event, error) {
	position, err := s.positions.get(ctx)
	if err != nil {
		return 0, nil, err
	}
	var rows pgx.Rows
	if t, ok := q.tagQuery(); ok {
		rows, err = s.pool.Query(ctx, `SELECT `+eventColumns+` FROM fstore_tag_events(`+tagQueryParams+`,
			$7::bigint, $8::bigint, $9::int)`, append(t.args(), after, position, limit)...)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT `+eventColumns+` FROM query_events($1, $2, $3, $4)`, query, after, limit, position)
	}
	if err != nil {
		return 0, nil, interpretError(err)
	}
	evs, err := collectEvents(rows)
	if err != nil {
		return 0, nil, interpretError(err)
	}
	return position, evs, nil
}

// queryJSON is q as JSON text: a string, which every query mode a
// connection string may choose sends as text (exec and simple_protocol
// would send a []byte as bytea).
func queryJSON(q Query) (string, error) {
	b, err := json.Marshal(q)
	return string(b), err
}

// AppendEventsIf is AppendEvents on a condition: nothing is stored, and the
// error is a *ConditionError, when an event matching cond.Query has an offset
// above cond.After. A retry of an append that succeeded (every event stored
// already, identical) returns the stored events without checking again. A
// malformed query is an error wrapping ErrInvalid.
//
// Conditional appends that arrive together are stored in one transaction
// (dcbgroup.go), each answered as if it had run alone.
func (s *Store) AppendEventsIf(ctx context.Context, evs []NewEvent, cond Condition) (AppendResult, error) {
	if err := cond.Query.check(); err != nil {
		return AppendResult{}, err
	}
	if len(evs) == 0 {
		return AppendResult{Events: []Event{}}, nil
	}
	query, err := queryJSON(cond.Query)
	if err != nil {
		return AppendResult{}, err
	}
	res, err := s.conditionals.append(ctx, &pendingConditional{ctx: ctx, evs: evs, cond: cond, query: query,
		done: make(chan appendOutcome, 1)})
	if err == nil && res.Created {
		s.watch.bump()
	}
	return res, err
}

// appendIfAlone is a conditional append in a transaction of its own.
func (s *Store) appendIfAlone(ctx context.Context, evs []NewEvent, query string, after int64) (AppendResult, error) {
	// A conditional append waits for the unconditional writers below its
	// offsets; one of them waiting for it in turn (the same stream, the same
	// event_id) is a deadlock PostgreSQL breaks by cancelling one. Either is
	// answered correctly by running again.
	return retryDeadlocks(func() (AppendResult, error) { return s.appendIf(ctx, evs, query, after) })
}

// The steps of a conditional append around its INSERT (0003_dcb.sql).
const (
	conditionLockSQL   = `SELECT fstore_condition_lock($1, $2, $3::text[]::jsonb[], $4::text[])`
	conditionAssertSQL = `SELECT fstore_condition_assert($1, $2, $3::text[]::uuid[])`
)

func (s *Store) appendIf(ctx context.Context, evs []NewEvent, query string, after int64) (AppendResult, error) {
	types, data := make([]string, len(evs)), make([]string, len(evs))
	ids := make([]string, len(evs)) // text, as every query mode sends it
	tags := []string{}
	for i, e := range evs {
		types[i], data[i], ids[i] = e.Event, string(e.Data), e.EventID.String()
		tags = append(tags, e.Tags...)
	}
	// One round trip: the three statements run in the implicit transaction
	// of one pipeline, which a failing statement rolls back whole.
	b := &pgx.Batch{}
	b.Queue(conditionLockSQL, query, types, data, tags)
	b.Queue(appendBatchSQL, columns(evs)...)
	b.Queue(conditionAssertSQL, query, after, ids)
	res, err := s.runConditional(ctx, b, evs, after)
	if err == nil || errors.Is(err, ErrConditionFailed) {
		return res, err
	}
	if err = interpretError(err); !isSentinel(err) {
		return AppendResult{}, err
	}
	// The insert was refused: find which event, and tell a retry from a
	// conflict, one event per statement.
	return s.appendIfOneByOne(ctx, evs, query, after, types, data, tags, ids)
}

func (s *Store) runConditional(ctx context.Context, b *pgx.Batch, evs []NewEvent, after int64) (AppendResult, error) {
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return AppendResult{}, err
	}
	rows, err := br.Query()
	if err != nil {
		return AppendResult{}, err
	}
	inserted, err := collectEvents(rows)
	if err != nil {
		return AppendResult{}, err
	}
	if _, err := br.Exec(); err != nil {
		return AppendResult{}, conditionError(err, after)
	}
	if err := br.Close(); err != nil {
		return AppendResult{}, err
	}
	return inOrder(evs, inserted)
}

// conditionError turns fstore_condition_assert's FS009 into a
// *ConditionError; its DETAIL is the offending offset.
func conditionError(err error, after int64) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == codeConditionFailed {
		if offset, perr := strconv.ParseInt(pgErr.Detail, 10, 64); perr == nil {
			return &ConditionError{Offset: offset, After: after}
		}
	}
	return err
}

// appendIfOneByOne is appendOneByOne on a condition.
func (s *Store) appendIfOneByOne(ctx context.Context, evs []NewEvent, query string, after int64,
	types, data, tags, ids []string) (AppendResult, error) {
	var res AppendResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, conditionLockSQL, query, types, data, tags); err != nil {
			return interpretError(err)
		}
		var err error
		res, err = s.insertOneByOne(ctx, tx, evs)
		if err != nil || !res.Created {
			// Nothing new: a retry of an append that went through.
			return err
		}
		if _, err := tx.Exec(ctx, conditionAssertSQL, query, after, ids); err != nil {
			if err = conditionError(err, after); errors.Is(err, ErrConditionFailed) {
				return err
			}
			return interpretError(err)
		}
		return nil
	})
	return res, err
}
