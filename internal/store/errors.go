package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Sentinel errors. Every error a Store method returns for a reason the caller
// can act on wraps exactly one of these; anything else is an internal error.
var (
	// ErrNotFound: the requested event, stream or decider does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNotRegistered: the event type is not registered for the decider and version.
	ErrNotRegistered = errors.New("event type not registered")
	// ErrConcurrencyConflict: previous_id is not the stream's last event.
	ErrConcurrencyConflict = errors.New("concurrency conflict")
	// ErrStreamFinal: the stream was finalised; nothing may be appended to it.
	ErrStreamFinal = errors.New("stream is final")
	// ErrDuplicateEventID: the event_id is stored already with other content.
	ErrDuplicateEventID = errors.New("duplicate event id")
	// ErrRegistrationConflict: the event type is registered with another description.
	ErrRegistrationConflict = errors.New("event type registered with another description")
	// ErrInvalid: the database refused a value as invalid (a last line of
	// defence behind the API's own validation).
	ErrInvalid = errors.New("invalid value")
	// ErrUnavailable: the database cannot be reached or is shutting down.
	ErrUnavailable = errors.New("database unavailable")
	// ErrLeaseLost: the lease_id is not the partition's current lease.
	ErrLeaseLost = errors.New("lease lost")
	// ErrNotHandedOut: the acked offset was not handed out in the lease.
	ErrNotHandedOut = errors.New("offset not handed out in this lease")
	// ErrConditionFailed: an event matching the condition's query was stored
	// after the condition's position.
	ErrConditionFailed = errors.New("condition failed")
	// ErrNameNotRegistered: a view lists a decider or event type that is
	// not registered (a *FieldError names the list entry).
	ErrNameNotRegistered = errors.New("name not registered")
	// ErrPartitionLeased: the partition is leased; an operator's skip or
	// replay waits for the lease to end.
	ErrPartitionLeased = errors.New("partition is leased")
	// ErrNotNextEvent: a skip named another offset than the partition's
	// next event.
	ErrNotNextEvent = errors.New("not the partition's next event")
	// ErrAheadOfProgress: a replay's after is above the partition's
	// progress (a *FieldError names it).
	ErrAheadOfProgress = errors.New("ahead of the partition's progress")
)

// FieldError is a refusal about one field of the request, named as the
// API names it (e.g. "deciders[2]", "after"). It wraps the sentinel.
type FieldError struct {
	Field, Message string
	Err            error
}

func (e *FieldError) Error() string { return e.Message }
func (e *FieldError) Unwrap() error { return e.Err }

// SQLSTATEs raised by fstore's own SQL (sql/migrations).
const (
	codeConcurrencyConflict = "FS001"
	codeStreamFinal         = "FS002"
	codeDuplicateEventID    = "FS003"
	codeImmutable           = "FS004"
	codeNotRegistered       = "FS005"
	codeNotFound            = "FS006"
	codeLeaseLost           = "FS007"
	codeNotHandedOut        = "FS008"
	codeConditionFailed     = "FS009"
	codeInvalidQuery        = "FS010"
	codePartitionLeased     = "FS011"
	codeNotNextEvent        = "FS012"
	codeAheadOfProgress     = "FS013"
	codeNameNotRegistered   = "FS014"
	// FS015 (no read horizon on a standby) is never raised by the store's
	// own reads: replica.go chooses a horizon first.
	codeStandbyBehind = "FS016"
)

// AppendError tells which event of an append failed and why. It wraps one of
// the sentinel errors (errors.Is works through it); its message is a
// sentence a client can act on.
type AppendError struct {
	// Index of the failing event in the request (0 for a single append).
	Index int
	// The failing event.
	EventID      uuid.UUID
	Event        string
	EventVersion int64
	Decider      string
	DeciderID    string
	// LastEventID is the stream's last event when Err is
	// ErrConcurrencyConflict; nil when the stream is empty.
	LastEventID *uuid.UUID
	// Err is the sentinel (and the driver error behind it).
	Err error
}

func (e *AppendError) Error() string {
	stream := fmt.Sprintf("stream (%q, %q)", e.Decider, e.DeciderID)
	switch {
	case errors.Is(e.Err, ErrStreamFinal):
		return stream + " is final: no event may be appended to it"
	case errors.Is(e.Err, ErrConcurrencyConflict) && e.LastEventID == nil:
		return "previous_id must be null: " + stream + " has no events"
	case errors.Is(e.Err, ErrConcurrencyConflict):
		return fmt.Sprintf("previous_id is not the last event of %s, which is %s: read the stream and decide again",
			stream, e.LastEventID)
	case errors.Is(e.Err, ErrDuplicateEventID):
		return fmt.Sprintf("event_id %s is stored already with other content", e.EventID)
	case errors.Is(e.Err, ErrNotRegistered):
		return fmt.Sprintf("event type %q version %d is not registered for decider %q", e.Event, e.EventVersion, e.Decider)
	}
	return fmt.Sprintf("event %s: %v", e.EventID, e.Err)
}

// dbError is a sentinel with the driver error behind it. Its message is safe
// to show a client; the cause stays reachable for logs.
type dbError struct {
	sentinel, cause error
}

// Error shows the sentinel, or the message of an error raised by fstore's own
// SQL (SQLSTATE class FS), which is written for people.
func (e *dbError) Error() string {
	var pgErr *pgconn.PgError
	if errors.As(e.cause, &pgErr) && strings.HasPrefix(pgErr.Code, "FS") {
		return pgErr.Message
	}
	return e.sentinel.Error()
}
func (e *dbError) Unwrap() []error { return []error{e.sentinel, e.cause} }

func (e *AppendError) Unwrap() error { return e.Err }

// interpretError converts a driver error into one wrapping a sentinel, by
// SQLSTATE and constraint name, never by message text.
func interpretError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return &dbError{ErrNotFound, err}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if sentinel := sentinelFor(pgErr); sentinel != nil {
			if pgErr.ColumnName != "" && strings.HasPrefix(pgErr.Code, "FS") {
				return &FieldError{Field: pgErr.ColumnName, Message: pgErr.Message, Err: &dbError{sentinel, err}}
			}
			return &dbError{sentinel, err}
		}
		return fmt.Errorf("store: %w", err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if isConnectionLost(err) {
		return &dbError{ErrUnavailable, err}
	}
	return fmt.Errorf("store: %w", err)
}

// isConnectionLost tells, by type, the errors of a database that cannot be
// reached or went away: a refused or failed connect, a network error, and
// a connection that ended mid-request (io.ErrUnexpectedEOF when the server
// died between two bytes of an answer, io.EOF between two answers, as in a
// failover). Whether such a request took effect is unknown: a client
// retries it, which every fstore write allows (event_id, lease_id).
func isConnectionLost(err error) bool {
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

func sentinelFor(e *pgconn.PgError) error {
	switch e.Code {
	case codeConcurrencyConflict:
		return ErrConcurrencyConflict
	case codeStreamFinal:
		return ErrStreamFinal
	case codeDuplicateEventID:
		return ErrDuplicateEventID
	case codeNotRegistered:
		return ErrNotRegistered
	case codeImmutable:
		return ErrInvalid
	case codeNotFound:
		return ErrNotFound
	case codeLeaseLost:
		return ErrLeaseLost
	case codeNotHandedOut:
		return ErrNotHandedOut
	case codeConditionFailed:
		return ErrConditionFailed
	case codeInvalidQuery:
		return ErrInvalid
	case codePartitionLeased:
		return ErrPartitionLeased
	case codeNotNextEvent:
		return ErrNotNextEvent
	case codeAheadOfProgress:
		return ErrAheadOfProgress
	case codeNameNotRegistered:
		return ErrNameNotRegistered
	case "23505": // unique_violation
		switch e.ConstraintName {
		case "events_previous_id_key", "events_stream_first_key":
			return ErrConcurrencyConflict
		case "events_event_id_key":
			return ErrDuplicateEventID
		case "deciders_pkey":
			return ErrRegistrationConflict
		}
	case "22P05", "22021", "22P02", "22001", "22003", "23514", "22023":
		// untranslatable character (\u0000 in JSON), bad encoding, bad text
		// representation, too long, out of range, check violation.
		return ErrInvalid
	case "57P01", "57P02", "57P03", "53300", "40P01", "40001", "55P03", "57014", "25006":
		// Shutdown, too many connections, and the transient refusals a
		// retry gets past: deadlock, serialization failure (a standby's
		// conflict with recovery too), lock timeout, statement timeout; a
		// write that reached a server that is read-only now (a primary
		// being demoted: the connection's next server takes it).
		return ErrUnavailable
	}
	if len(e.Code) == 5 && e.Code[:2] == "08" { // connection exception
		return ErrUnavailable
	}
	return nil
}

// retryDeadlocks runs f again, up to twice, while PostgreSQL cancels it to
// break a deadlock: the cycle is gone by then, so the next run's answer is
// the true one.
func retryDeadlocks[T any](f func() (T, error)) (T, error) {
	v, err := f()
	for attempt := 0; isDeadlock(err) && attempt < 2; attempt++ {
		v, err = f()
	}
	return v, err
}

func isDeadlock(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40P01"
}
