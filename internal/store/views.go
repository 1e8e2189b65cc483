package store

import (
	"context"
	"errors"
	"net/url"
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
	// The deciders whose events the view takes, sorted; null: every decider.
	Deciders []string `json:"deciders" extensions:"x-nullable" binding:"required" example:"order"`
	// The event types the view takes, sorted; null: every type.
	Events []string `json:"events" extensions:"x-nullable" binding:"required" example:"order-placed"`
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
	// Partitions whose next event failed at least once and has not been
	// delivered since (parked ones included).
	PartitionsFailing int64 `json:"partitions_failing" format:"int64" binding:"required"`
	// The most recent error of a partition that has not delivered since;
	// null when no partition is failing.
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
	// The view's scope: nil takes every decider, every event type. Every
	// name must be registered (a *FieldError wrapping ErrNameNotRegistered otherwise). Changing the lists
	// keeps every partition's progress.
	Deciders, Events []string
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
	// When the current failure was last seen; null when not failing.
	LastErrorAt *time.Time `json:"last_error_at" format:"date-time" extensions:"x-nullable" binding:"required"`
} //@name Partition

// LeasedEvent is an event handed out in a lease.
type LeasedEvent struct {
	Event
	// The partition's lease: present it to ack or nack.
	LeaseID uuid.UUID `json:"lease_id" swaggertype:"string" format:"uuid" binding:"required"`
	// How many times delivering the partition's next event failed so far
	// (nacks and failed pushes): 0 on a first delivery.
	Attempts int `json:"attempts" binding:"required"`
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

const viewColumns = `view, start_at, lock_timeout_s, pooling_delay_s, edge_function_url, deciders, events,
	created_at, updated_at, dispatch_disabled_at, dispatch_disabled_reason`

const partitionColumns = `view, decider, decider_id, acked_offset, head_offset, lease_id, leased_until, retry_at,
	attempts, parked, last_error, last_status, last_error_at`

func scanView(row pgx.Row, extra ...any) (View, error) {
	var v View
	dest := append([]any{&v.View, &v.StartAt, &v.LockTimeoutS, &v.PollingDelayS, &v.EdgeFunctionURL, &v.Deciders,
		&v.Events, &v.CreatedAt, &v.UpdatedAt, &v.DispatchDisabledAt, &v.DispatchDisabledReason}, extra...)
	err := row.Scan(dest...)
	v.EdgeFunctionURL = redactUserInfo(v.EdgeFunctionURL)
	return v, err
}

// redactUserInfo drops credentials from a URL stored before registration
// refused them: no answer shows them.
func redactUserInfo(raw *string) *string {
	if raw == nil {
		return nil
	}
	u, err := url.Parse(*raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = nil
	clean := u.String()
	return &clean
}

func scanPartition(row pgx.Row, extra ...any) (Partition, error) {
	var p Partition
	var lease pgtype.UUID
	dest := append([]any{&p.View, &p.Decider, &p.DeciderID, &p.AckedOffset, &p.HeadOffset, &lease, &p.LeasedUntil,
		&p.RetryAt, &p.Attempts, &p.Parked, &p.LastError, &p.LastStatus, &p.LastErrorAt}, extra...)
	err := row.Scan(dest...)
	if lease.Valid {
		id := uuid.UUID(lease.Bytes)
		p.LeaseID = &id
	}
	return p, err
}

// RegisterView registers a view or updates it; created tells which. A
// name in r.Deciders or r.Events that is not registered is a *FieldError
// wrapping ErrNameNotRegistered.
func (s *Store) RegisterView(ctx context.Context, r ViewRegistration) (View, bool, error) {
	var secret *string
	v, err := scanView(s.pool.QueryRow(ctx, `SELECT `+viewColumns+`, secret
		FROM register_view($1, $2, $3, $4, $5, $6, $7, $8)`,
		r.View, r.StartAt, r.LockTimeoutS, r.PollingDelayS, r.EdgeFunctionURL, r.Secret, r.Deciders, r.Events), &secret)
	if err != nil {
		return View{}, false, interpretError(err)
	}
	if v.EdgeFunctionURL != nil {
		v.Secret = secret
	}
	// register_view sets updated_at only when it updates.
	created := v.CreatedAt.Equal(v.UpdatedAt)
	statuses, err := s.viewStatuses(ctx, &r.View, false) // read your write
	v.Status = statuses[r.View]
	return v, created, err
}

// GetView returns a view with its status; ErrNotFound when it does not exist.
func (s *Store) GetView(ctx context.Context, name string) (View, error) {
	statuses, err := s.viewStatuses(ctx, &name, true)
	if err != nil {
		return View{}, err
	}
	v, err := scanView(s.pool.QueryRow(ctx, `SELECT `+viewColumns+` FROM views WHERE view = $1`, name))
	if err != nil {
		if err = interpretError(err); errors.Is(err, ErrNotFound) {
			err = viewNotFound(err, name)
		}
		return View{}, err
	}
	v.Status = statuses[name]
	return v, nil
}

// ListViews returns every view with its status, ordered by name, in three
// queries whatever the number of views.
func (s *Store) ListViews(ctx context.Context) ([]View, error) {
	statuses, err := s.viewStatuses(ctx, nil, true)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+viewColumns+` FROM views ORDER BY view`)
	if err != nil {
		return nil, interpretError(err)
	}
	views, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (View, error) { return scanView(r) })
	if err != nil {
		return nil, interpretError(err)
	}
	for i := range views {
		views[i].Status = statuses[views[i].View]
	}
	return views, nil
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
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+`, lease_id, attempts FROM stream_events($1, $2, $3, $4)`,
		view, r.Limit, timeout, r.MaxPerPartition)
	if err != nil {
		return nil, interpretError(err)
	}
	evs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (LeasedEvent, error) {
		var le LeasedEvent
		var err error
		le.Event, err = scanEvent(row, &le.LeaseID, &le.Attempts)
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
// again after retryAfter (0: at once). A reason ("" for none) says why: it
// becomes the partition's last_error and is recorded as an attempt.
// Errors: ErrNotFound, ErrLeaseLost.
func (s *Store) Nack(ctx context.Context, view, decider, deciderID string, leaseID uuid.UUID, retryAfter time.Duration, reason string) (Partition, error) {
	var why *string
	if reason != "" {
		why = &reason
	}
	p, err := s.settle(ctx, `SELECT `+partitionColumns+` FROM schedule_nack_event($1, $2, $3, $4, $5, $6)`,
		view, decider, deciderID, pgUUID(&leaseID), retryAfter.Milliseconds(), why)
	if err != nil {
		return p, s.partitionError(ctx, err, partitionRef{view, decider, deciderID}, leaseID, 0)
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
