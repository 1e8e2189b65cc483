package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// PartitionState is a partition with its lag, as the partition routes show it.
type PartitionState struct {
	Partition
	// Matching events after the partition's progress.
	EventsPending int64 `json:"events_pending" format:"int64" binding:"required"`
} //@name PartitionState

// PartitionDetail is one partition with the event it waits on.
type PartitionDetail struct {
	PartitionState
	// The next matching event to deliver; null when caught up.
	NextEvent *Event `json:"next_event" extensions:"x-nullable" binding:"required"`
} //@name PartitionDetail

// Partition states a list may be filtered by.
const (
	StateAll     = "all"     // every partition in the view's scope
	StateBehind  = "behind"  // with matching events not yet acked
	StateLeased  = "leased"  // leased to a consumer now
	StateFailing = "failing" // its next event failed at least once (parked ones included)
	StateParked  = "parked"  // parked after repeated push failures
)

// PartitionStates lists the states ListPartitions takes, StateAll first.
var PartitionStates = []string{StateAll, StateBehind, StateLeased, StateFailing, StateParked}

// statePages page through each state's partitions for ListPartitions:
// all through the primary key, failing and parked through the trouble
// index, each from the cursor on; behind and leased from the partitions
// behind (and leases outliving a change of lists), sorted (0009). A page
// reads the partitions it shows (and, for all, those out of scope among
// them), or for behind and leased those behind after the cursor: never the
// partitions caught up.
var statePages = map[string]string{
	StateAll:     orderedPage(`p.matched`),
	StateFailing: orderedPage(`(p.attempts > 0 OR p.parked)`),
	StateParked:  orderedPage(`p.parked`),
	StateBehind:  sortedPage(partitionsWhere(`p.decider, p.decider_id`, "$1", cursorSQL, behindIdle, behindParked)),
	StateLeased: sortedPage(partitionsWhere(`p.decider, p.decider_id`, "$1", cursorSQL+` AND p.leased_until > now()`,
		behindIdle, behindParked, staleLease)),
}

// cursorSQL starts a page after ($2, $3). Names are never empty, so ("",
// "") sorts before every partition and the first page is a range from the
// cursor too: with "$2 IS NULL OR" the range would become a filter, read
// from the view's first partition on.
const cursorSQL = ` AND (p.decider, p.decider_id) > ($2::text, $3::text)`

// orderedPage pages the partitions of view $1 that pass filter, in key
// order from the cursor, $4 at most: filter is the predicate of an index in
// key order (or the primary key's).
func orderedPage(filter string) string {
	return `SELECT ` + prefixedPartition + `, ` + partitionPendingSQL + `
		FROM views w JOIN view_partitions p ON p.view = w.view
		WHERE w.view = $1 AND ` + filter + cursorSQL + `
		ORDER BY p.decider, p.decider_id LIMIT $4`
}

// sortedPage pages the partitions whose keys keys selects, sorting them:
// materialised, so that the planner reads keys' indexes whole rather than
// walk the primary key in order and filter, as a LIMIT would tempt it to.
func sortedPage(keys string) string {
	return `WITH keys AS MATERIALIZED (` + keys + `),
		page AS (SELECT decider, decider_id FROM keys ORDER BY decider, decider_id LIMIT $4)
		SELECT ` + prefixedPartition + `, ` + partitionPendingSQL + `
		FROM page JOIN view_partitions p ON p.view = $1 AND p.decider = page.decider AND p.decider_id = page.decider_id
		          JOIN views w ON w.view = p.view
		ORDER BY p.decider, p.decider_id`
}

// PartitionQuery pages through a view's partitions in (decider,
// decider_id) order.
type PartitionQuery struct {
	State string // one of PartitionStates; "" is StateAll
	// Start after this partition (nil: from the first).
	AfterDecider, AfterDeciderID *string
	Limit                        int
}

// partitionPendingSQL is a partition's events_pending: its matching events
// after its progress once discovery has seen one (head_offset), else 0.
const partitionPendingSQL = `CASE WHEN p.head_offset > p.acked_offset THEN ` + pendingSQL + ` ELSE 0 END`

// ListPartitions returns up to q.Limit partitions of the view in the given
// state, after the given one. ErrNotFound when the view does not exist;
// ErrInvalid for an unknown state. Whatever the state, a page never reads
// the view's partitions that are caught up and not shown (statePages).
func (s *Store) ListPartitions(ctx context.Context, view string, q PartitionQuery) ([]PartitionState, error) {
	if q.State == "" {
		q.State = StateAll
	}
	page, ok := statePages[q.State]
	if !ok {
		return nil, fmt.Errorf("state %q: %w", q.State, ErrInvalid)
	}
	var afterDecider, afterID string
	if q.AfterDecider != nil && q.AfterDeciderID != nil {
		afterDecider, afterID = *q.AfterDecider, *q.AfterDeciderID
	}
	rows, err := s.pool.Query(ctx, page, view, afterDecider, afterID, q.Limit)
	if err != nil {
		return nil, interpretError(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PartitionState, error) {
		var ps PartitionState
		var err error
		ps.Partition, err = scanPartition(r, &ps.EventsPending)
		return ps, err
	})
	if err != nil {
		return nil, interpretError(err)
	}
	if len(out) == 0 {
		if err := s.viewExists(ctx, view); err != nil {
			return nil, err
		}
	}
	return out, nil
}

var prefixedPartition = `p.view, p.decider, p.decider_id, p.acked_offset, p.head_offset, p.lease_id, p.leased_until,
	p.retry_at, p.attempts, p.parked, p.last_error, p.last_status, p.last_error_at`

func (s *Store) viewExists(ctx context.Context, view string) error {
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS(SELECT 1 FROM views WHERE view = $1)`, view).Scan(&exists); err != nil {
		return interpretError(err)
	}
	if !exists {
		return viewNotFound(ErrNotFound, view)
	}
	return nil
}

func (s *Store) noPartition(ctx context.Context, view, decider, deciderID string, err error) error {
	return s.partitionError(ctx, interpretError(err), partitionRef{view, decider, deciderID}, uuid.Nil, 0)
}

// PartitionDetail returns one partition with its lag and the event it
// waits on; ErrNotFound when the view has no such partition.
func (s *Store) PartitionDetail(ctx context.Context, view, decider, deciderID string) (PartitionDetail, error) {
	var d PartitionDetail
	var err error
	d.Partition, err = scanPartition(s.pool.QueryRow(ctx, `SELECT `+prefixedPartition+`, `+partitionPendingSQL+`
		FROM views w JOIN view_partitions p ON p.view = w.view
		WHERE w.view = $1 AND p.decider = $2 AND p.decider_id = $3`, view, decider, deciderID), &d.EventsPending)
	if err != nil {
		return PartitionDetail{}, s.noPartition(ctx, view, decider, deciderID, err)
	}
	e, err := scanEvent(s.pool.QueryRow(ctx, `SELECT `+eventColumns+` FROM fstore_next_event($1, $2, $3, $4)`,
		view, decider, deciderID, d.AckedOffset))
	switch {
	case err == nil:
		d.NextEvent = &e
	case !errors.Is(err, pgx.ErrNoRows):
		return PartitionDetail{}, interpretError(err)
	}
	return d, nil
}

// RetryPartition un-parks a partition: its head is delivered again now.
// ErrNotFound when the view has no such partition.
func (s *Store) RetryPartition(ctx context.Context, view, decider, deciderID string) (Partition, error) {
	p, err := scanPartition(s.pool.QueryRow(ctx, `UPDATE view_partitions
		SET parked = FALSE, retry_at = NULL, attempts = 0, failing_since = NULL
		WHERE view = $1 AND decider = $2 AND decider_id = $3 RETURNING `+partitionColumns, view, decider, deciderID))
	if err != nil {
		return Partition{}, s.noPartition(ctx, view, decider, deciderID, err)
	}
	return p, nil
}

// RetryParked un-parks every parked partition of the view and returns how
// many; ErrNotFound when the view does not exist.
func (s *Store) RetryParked(ctx context.Context, view string) (int64, error) {
	var exists bool
	var n int64
	// parked is in the trouble index's predicate: only parked rows are read.
	err := s.pool.QueryRow(ctx, `WITH u AS (UPDATE view_partitions
		SET parked = FALSE, retry_at = NULL, attempts = 0, failing_since = NULL
		WHERE view = $1 AND parked RETURNING 1)
		SELECT EXISTS(SELECT 1 FROM views WHERE view = $1), (SELECT count(*) FROM u)`, view).Scan(&exists, &n)
	if err != nil {
		return 0, interpretError(err)
	}
	if !exists {
		return 0, viewNotFound(ErrNotFound, view)
	}
	return n, nil
}

// SkipEvent settles the partition's next event without delivering it (a
// poison event): offset must be that event's. It un-parks the partition,
// ends its failure and records the skip as an attempt. Errors: ErrNotFound,
// ErrPartitionLeased (refused while leased), ErrNotNextEvent.
func (s *Store) SkipEvent(ctx context.Context, view, decider, deciderID string, offset int64) (PartitionDetail, error) {
	if _, err := s.settle(ctx, `SELECT `+partitionColumns+` FROM skip_event($1, $2, $3, $4)`,
		view, decider, deciderID, offset); err != nil {
		return PartitionDetail{}, s.partitionError(ctx, err, partitionRef{view, decider, deciderID}, uuid.Nil, 0)
	}
	return s.PartitionDetail(ctx, view, decider, deciderID)
}

// ReplayPartition moves the partition's progress back so that its matching
// events after `after` are delivered again (after before the view's start:
// from the start). Errors: ErrNotFound, ErrPartitionLeased, and
// ErrAheadOfProgress when after is above the progress: a replay never
// moves progress past what was handed out.
func (s *Store) ReplayPartition(ctx context.Context, view, decider, deciderID string, after int64) (PartitionDetail, error) {
	if _, err := s.settle(ctx, `SELECT `+partitionColumns+` FROM replay_partition($1, $2, $3, $4)`,
		view, decider, deciderID, after); err != nil {
		return PartitionDetail{}, s.partitionError(ctx, err, partitionRef{view, decider, deciderID}, uuid.Nil, 0)
	}
	return s.PartitionDetail(ctx, view, decider, deciderID)
}

// Attempt is one try at delivering a partition's event: a push, a nack
// that said why, or an operator's skip.
type Attempt struct {
	At time.Time `json:"at" format:"date-time" binding:"required"`
	// push, nack or skip.
	Kind    string     `json:"kind" enums:"push,nack,skip" binding:"required"`
	EventID *uuid.UUID `json:"event_id" swaggertype:"string" format:"uuid" extensions:"x-nullable" binding:"required"`
	Offset  *int64     `json:"offset" format:"int64" extensions:"x-nullable" binding:"required"`
	// How long the push took, answer included.
	DurationMs float64 `json:"duration_ms" binding:"required"`
	// The receiver's HTTP status; null when there was no answer.
	Status *int `json:"status" extensions:"x-nullable" binding:"required"`
	// What went wrong; null for a delivery.
	Error *string `json:"error" extensions:"x-nullable" binding:"required"`
	// The first 1 KiB of the answer's body.
	Response *string `json:"response" extensions:"x-nullable" binding:"required"`
} //@name Attempt

// MaxAttemptResponse is how much of an answer's body an attempt keeps.
const MaxAttemptResponse = 1024

// MaxAttempts is how many of a partition's attempts are kept.
const MaxAttempts = 100

// Attempts returns the partition's most recent attempts, newest first, at
// most limit and at most MaxAttempts (the store keeps the last 100).
// ErrNotFound when the view has no such partition.
func (s *Store) Attempts(ctx context.Context, view, decider, deciderID string, limit int) ([]Attempt, error) {
	rows, err := s.pool.Query(ctx, `SELECT t.at, t.kind, COALESCE(t.event_id, ev.event_id), t."offset", t.duration_ms,
		       t.status, t.error, t.response
		FROM (SELECT (x ->> 'at')::timestamptz AS at, COALESCE(x ->> 'kind', 'push') AS kind,
		             (x ->> 'event_id')::uuid AS event_id, (x ->> 'offset')::bigint AS "offset",
		             COALESCE((x ->> 'duration_ms')::float8, 0) AS duration_ms, (x ->> 'status')::int AS status,
		             x ->> 'error' AS error, CASE WHEN x ? 'status' THEN COALESCE(x ->> 'response', '') END AS response,
		             a.seq, e.ord
		      FROM view_attempts a CROSS JOIN LATERAL jsonb_array_elements(a.attempts) WITH ORDINALITY AS e(x, ord)
		      WHERE a.view = $1 AND a.decider = $2 AND a.decider_id = $3
		      ORDER BY a.seq DESC, e.ord DESC LIMIT $4) t
		         LEFT JOIN events ev ON ev."offset" = t."offset" AND t.event_id IS NULL
		ORDER BY t.seq DESC, t.ord DESC`, view, decider, deciderID, min(limit, MaxAttempts))
	if err != nil {
		return nil, interpretError(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Attempt, error) {
		var a Attempt
		err := r.Scan(&a.At, &a.Kind, &a.EventID, &a.Offset, &a.DurationMs, &a.Status, &a.Error, &a.Response)
		return a, err
	})
	if err != nil {
		return nil, interpretError(err)
	}
	if len(out) == 0 {
		if _, err := s.GetPartition(ctx, view, decider, deciderID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// PruneAttempts deletes attempts recorded before `before`, oldest first,
// through the index on their time (no scan of the table): up to limit
// settlements' worth (a lease's pushes are stored together, up to 10). It
// returns how many settlements it deleted.
func (s *Store) PruneAttempts(ctx context.Context, before time.Time, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM view_attempts WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM view_attempts WHERE at < $1 ORDER BY at LIMIT $2))`, before, limit)
	if err != nil {
		return 0, interpretError(err)
	}
	return tag.RowsAffected(), nil
}

// GetPartition returns one partition's progress; ErrNotFound when the view
// has no such partition.
func (s *Store) GetPartition(ctx context.Context, view, decider, deciderID string) (Partition, error) {
	p, err := scanPartition(s.pool.QueryRow(ctx, `SELECT `+partitionColumns+` FROM view_partitions
		WHERE view = $1 AND decider = $2 AND decider_id = $3`, view, decider, deciderID))
	if err != nil {
		return Partition{}, s.noPartition(ctx, view, decider, deciderID, err)
	}
	return p, nil
}
