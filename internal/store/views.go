package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// View is a named consumer group over the log.
type View struct {
	View string `json:"view" example:"order-summaries" binding:"required"`
	// Events created from this time on are delivered.
	StartAt time.Time `json:"start_at" format:"date-time" binding:"required"`
	// How long a lease lasts unless a stream call asks otherwise.
	LockTimeoutS int64 `json:"lock_timeout_s" example:"300" binding:"required"`
	// For the dispatcher: how often, in seconds, it looks for this view's
	// work when it hears of no new event (retries come due, leases expire);
	// null: its poll interval (1 s). fstore-sql's pooling_delay_s.
	PollingDelayS *int64 `json:"polling_delay_s" extensions:"x-nullable" binding:"required"`
	// Where the dispatcher pushes events; null for a view its consumers poll.
	EdgeFunctionURL *string `json:"edge_function_url" extensions:"x-nullable" binding:"required"`
	// When and why push delivery was disabled (the receiver answered 410
	// Gone); registering the view again enables it.
	DispatchDisabledAt     *time.Time `json:"dispatch_disabled_at,omitempty" format:"date-time"`
	DispatchDisabledReason *string    `json:"dispatch_disabled_reason,omitempty"`
	// The webhook signing secret (whsec_…): only in the answer to a
	// registration of a view with an edge_function_url.
	Secret    *string    `json:"secret,omitempty" example:"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"`
	CreatedAt time.Time  `json:"created_at" format:"date-time" binding:"required"`
	UpdatedAt time.Time  `json:"updated_at" format:"date-time" binding:"required"`
	Status    ViewStatus `json:"status" binding:"required"`
} //@name View

// ViewStatus is how far a view's consumers are behind.
type ViewStatus struct {
	// Streams the view has seen events of.
	Partitions int64 `json:"partitions" format:"int64" binding:"required"`
	// Partitions with events not yet acked.
	PartitionsBehind int64 `json:"partitions_behind" format:"int64" binding:"required"`
	// Events not yet acked, over all partitions (the lag).
	EventsPending int64 `json:"events_pending" format:"int64" binding:"required"`
	// Partitions leased to a consumer now.
	PartitionsLeased int64 `json:"partitions_leased" format:"int64" binding:"required"`
	// Partitions parked after repeated delivery failures.
	PartitionsParked int64 `json:"partitions_parked" format:"int64" binding:"required"`
	// The most recent delivery error, if any.
	LastError *PartitionError `json:"last_error" extensions:"x-nullable" binding:"required"`
} //@name ViewStatus

// PartitionError is a partition's last delivery error.
type PartitionError struct {
	Decider   string    `json:"decider" binding:"required"`
	DeciderID string    `json:"decider_id" binding:"required"`
	Error     string    `json:"error" binding:"required"`
	At        time.Time `json:"at" format:"date-time" binding:"required"`
} //@name PartitionError

// ViewRegistration registers or updates a view.
type ViewRegistration struct {
	View string
	// nil keeps the view's start (now for a new view); another start moves
	// every partition's progress to that time.
	StartAt         *time.Time
	LockTimeoutS    int64
	PollingDelayS   *int64
	EdgeFunctionURL *string
	// nil keeps the view's signing secret, or makes one for a view with an
	// edge_function_url.
	Secret *string
}

// Partition is one stream's progress in a view.
type Partition struct {
	View      string `json:"view" binding:"required"`
	Decider   string `json:"decider" binding:"required"`
	DeciderID string `json:"decider_id" binding:"required"`
	// Processed up to and including this offset.
	AckedOffset int64 `json:"acked_offset" format:"int64" binding:"required"`
	// The stream's newest offset the view has seen.
	HeadOffset  int64      `json:"head_offset" format:"int64" binding:"required"`
	LeaseID     *uuid.UUID `json:"lease_id" swaggertype:"string" format:"uuid" extensions:"x-nullable" binding:"required"`
	LeasedUntil *time.Time `json:"leased_until" format:"date-time" extensions:"x-nullable" binding:"required"`
	// Not leased again before this time (a nack with a delay).
	RetryAt   *time.Time `json:"retry_at" format:"date-time" extensions:"x-nullable" binding:"required"`
	Attempts  int        `json:"attempts" binding:"required"`
	Parked    bool       `json:"parked" binding:"required"`
	LastError *string    `json:"last_error" extensions:"x-nullable" binding:"required"`
	// The HTTP status of the last failed push; null when there was no answer.
	LastStatus *int `json:"last_status" extensions:"x-nullable" binding:"required"`
} //@name Partition

// LeasedEvent is an event handed out in a lease.
type LeasedEvent struct {
	Event
	// The partition's lease: present it to ack or nack.
	LeaseID uuid.UUID `json:"lease_id" swaggertype:"string" format:"uuid" binding:"required"`
} //@name LeasedEvent

// LeaseRequest asks for work.
type LeaseRequest struct {
	// Partitions at most (1..1000).
	Limit int
	// Consecutive events of one partition at most (1..1000).
	MaxPerPartition int
	// The lease's length; 0 means the view's lock_timeout_s.
	LockTimeout time.Duration
}

const viewColumns = `view, start_at, lock_timeout_s, pooling_delay_s, edge_function_url, created_at, updated_at,
	dispatch_disabled_at, dispatch_disabled_reason`

const partitionColumns = `view, decider, decider_id, acked_offset, head_offset, lease_id, leased_until, retry_at,
	attempts, parked, last_error, last_status`

func scanView(row pgx.Row) (View, error) {
	var v View
	err := row.Scan(&v.View, &v.StartAt, &v.LockTimeoutS, &v.PollingDelayS, &v.EdgeFunctionURL, &v.CreatedAt, &v.UpdatedAt,
		&v.DispatchDisabledAt, &v.DispatchDisabledReason)
	return v, err
}

func scanPartition(row pgx.Row) (Partition, error) {
	var p Partition
	var lease pgtype.UUID
	err := row.Scan(&p.View, &p.Decider, &p.DeciderID, &p.AckedOffset, &p.HeadOffset, &lease, &p.LeasedUntil,
		&p.RetryAt, &p.Attempts, &p.Parked, &p.LastError, &p.LastStatus)
	if lease.Valid {
		id := uuid.UUID(lease.Bytes)
		p.LeaseID = &id
	}
	return p, err
}

// RegisterView registers a view or updates it; created tells which.
func (s *Store) RegisterView(ctx context.Context, r ViewRegistration) (View, bool, error) {
	var v View
	err := s.pool.QueryRow(ctx, `SELECT `+viewColumns+`, secret FROM register_view($1, $2, $3, $4, $5, $6)`,
		r.View, r.StartAt, r.LockTimeoutS, r.PollingDelayS, r.EdgeFunctionURL, r.Secret).
		Scan(&v.View, &v.StartAt, &v.LockTimeoutS, &v.PollingDelayS, &v.EdgeFunctionURL, &v.CreatedAt, &v.UpdatedAt,
			&v.DispatchDisabledAt, &v.DispatchDisabledReason, &v.Secret)
	if err != nil {
		return View{}, false, interpretError(err)
	}
	if v.EdgeFunctionURL == nil {
		v.Secret = nil
	}
	// register_view sets updated_at only when it updates.
	created := v.CreatedAt.Equal(v.UpdatedAt)
	v.Status, err = s.viewStatus(ctx, r.View)
	return v, created, err
}

// GetView returns a view with its status; ErrNotFound when it does not exist.
func (s *Store) GetView(ctx context.Context, name string) (View, error) {
	v, err := scanView(s.pool.QueryRow(ctx, `SELECT `+viewColumns+` FROM views WHERE view = $1`, name))
	if err != nil {
		if err = interpretError(err); errors.Is(err, ErrNotFound) {
			err = viewNotFound(err, name)
		}
		return View{}, err
	}
	v.Status, err = s.viewStatus(ctx, name)
	return v, err
}

// ListViews returns every view with its status, ordered by name.
func (s *Store) ListViews(ctx context.Context) ([]View, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+viewColumns+` FROM views ORDER BY view`)
	if err != nil {
		return nil, interpretError(err)
	}
	views, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (View, error) { return scanView(r) })
	if err != nil {
		return nil, interpretError(err)
	}
	for i := range views {
		if views[i].Status, err = s.viewStatus(ctx, views[i].View); err != nil {
			return nil, err
		}
	}
	return views, nil
}

// viewStatus brings the view's partitions up to date with the log and
// counts them. Counting pending events costs O(pending events).
func (s *Store) viewStatus(ctx context.Context, name string) (ViewStatus, error) {
	var st ViewStatus
	if _, err := s.pool.Exec(ctx, `SELECT fstore_discover($1)`, name); err != nil {
		return st, interpretError(err)
	}
	err := s.pool.QueryRow(ctx, `
		SELECT count(*),
		       count(*) FILTER (WHERE p.head_offset > p.acked_offset),
		       COALESCE(sum((SELECT count(*) FROM events e WHERE e.decider = p.decider AND e.decider_id = p.decider_id
		                     AND e."offset" > p.acked_offset)) FILTER (WHERE p.head_offset > p.acked_offset), 0),
		       count(*) FILTER (WHERE p.leased_until > now()),
		       count(*) FILTER (WHERE p.parked)
		FROM view_partitions p WHERE p.view = $1`, name).
		Scan(&st.Partitions, &st.PartitionsBehind, &st.EventsPending, &st.PartitionsLeased, &st.PartitionsParked)
	if err != nil {
		return st, interpretError(err)
	}
	var pe PartitionError
	err = s.pool.QueryRow(ctx, `SELECT decider, decider_id, last_error, last_error_at FROM view_partitions
		WHERE view = $1 AND last_error IS NOT NULL ORDER BY last_error_at DESC LIMIT 1`, name).
		Scan(&pe.Decider, &pe.DeciderID, &pe.Error, &pe.At)
	switch {
	case err == nil:
		st.LastError = &pe
	case !errors.Is(err, pgx.ErrNoRows):
		return st, interpretError(err)
	}
	return st, nil
}

// DeleteView removes a view and its progress; ErrNotFound when it does not exist.
func (s *Store) DeleteView(ctx context.Context, name string) error {
	// The cascade to view_partitions locks rows in another order than a
	// consumer or the dispatcher leasing them; PostgreSQL cancels one.
	tag, err := retryDeadlocks(func() (pgconn.CommandTag, error) {
		return s.pool.Exec(ctx, `DELETE FROM views WHERE view = $1`, name)
	})
	if err != nil {
		return interpretError(err)
	}
	if tag.RowsAffected() == 0 {
		return viewNotFound(ErrNotFound, name)
	}
	return nil
}

// LeaseEvents leases up to r.Limit partitions of the view that have work,
// each with up to r.MaxPerPartition consecutive events, in offset order.
// A partition is leased by one caller at a time; ErrNotFound for an unknown view.
func (s *Store) LeaseEvents(ctx context.Context, view string, r LeaseRequest) ([]LeasedEvent, error) {
	var timeout *int64
	if r.LockTimeout > 0 {
		secs := int64((r.LockTimeout + time.Second - 1) / time.Second)
		timeout = &secs
	}
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+`, lease_id FROM stream_events($1, $2, $3, $4)`,
		view, r.Limit, timeout, r.MaxPerPartition)
	if err != nil {
		return nil, interpretError(err)
	}
	evs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (LeasedEvent, error) {
		var le LeasedEvent
		var err error
		le.Event, err = scanEvent(row, &le.LeaseID)
		return le, err
	})
	if err != nil {
		if err = interpretError(err); errors.Is(err, ErrNotFound) {
			err = viewNotFound(err, view)
		}
		return nil, err
	}
	return evs, nil
}

// Ack records that the partition is processed up to and including offset,
// an offset handed out in lease leaseID, and releases the lease. Errors:
// ErrNotFound, ErrLeaseLost, ErrNotHandedOut.
func (s *Store) Ack(ctx context.Context, view, decider, deciderID string, offset int64, leaseID uuid.UUID) (Partition, error) {
	p, err := s.settle(ctx, `SELECT `+partitionColumns+` FROM ack_event($1, $2, $3, $4, $5)`,
		view, decider, deciderID, offset, pgUUID(&leaseID))
	if err != nil {
		return p, s.partitionError(ctx, err, partitionRef{view, decider, deciderID}, leaseID, offset)
	}
	return p, nil
}

// Nack releases the lease without progress; the partition may be leased
// again after retryAfter (0: at once). Errors: ErrNotFound, ErrLeaseLost.
func (s *Store) Nack(ctx context.Context, view, decider, deciderID string, leaseID uuid.UUID, retryAfter time.Duration) (Partition, error) {
	p, err := s.settle(ctx, `SELECT `+partitionColumns+` FROM schedule_nack_event($1, $2, $3, $4, $5)`,
		view, decider, deciderID, pgUUID(&leaseID), retryAfter.Milliseconds())
	if err != nil {
		return p, s.partitionError(ctx, err, partitionRef{view, decider, deciderID}, leaseID, 0)
	}
	return p, nil
}

// RetryPartition un-parks a partition: its head is delivered again now.
// ErrNotFound when the view has no such partition.
func (s *Store) RetryPartition(ctx context.Context, view, decider, deciderID string) (Partition, error) {
	p, err := scanPartition(s.pool.QueryRow(ctx, `UPDATE view_partitions
		SET parked = FALSE, retry_at = NULL, attempts = 0, failing_since = NULL
		WHERE view = $1 AND decider = $2 AND decider_id = $3 RETURNING `+partitionColumns, view, decider, deciderID))
	if err != nil {
		return Partition{}, s.partitionError(ctx, interpretError(err), partitionRef{view, decider, deciderID}, uuid.Nil, 0)
	}
	return p, nil
}

func (s *Store) settle(ctx context.Context, sql string, args ...any) (Partition, error) {
	p, err := scanPartition(s.pool.QueryRow(ctx, sql, args...))
	if err != nil {
		return Partition{}, interpretError(err)
	}
	return p, nil
}

// GetPartition returns one partition's progress; ErrNotFound when the view
// has no such partition.
func (s *Store) GetPartition(ctx context.Context, view, decider, deciderID string) (Partition, error) {
	p, err := scanPartition(s.pool.QueryRow(ctx, `SELECT `+partitionColumns+` FROM view_partitions
		WHERE view = $1 AND decider = $2 AND decider_id = $3`, view, decider, deciderID))
	if err != nil {
		return Partition{}, s.partitionError(ctx, interpretError(err), partitionRef{view, decider, deciderID}, uuid.Nil, 0)
	}
	return p, nil
}
