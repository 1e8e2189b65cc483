package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/rs/zerolog/hlog"

	"github.com/fstore/fstore/internal/store"
)

// ProblemTypePrefix starts every problem's type URI; the rest is the slug
// that clients match on, e.g. "urn:fstore:problem:concurrency-conflict".
const ProblemTypePrefix = "urn:fstore:problem:"

// Problem is an RFC 9457 problem details body (application/problem+json).
type Problem struct {
	// A URI that names the kind of problem: urn:fstore:problem:<slug>.
	Type   string `json:"type" example:"urn:fstore:problem:concurrency-conflict" binding:"required"`
	Title  string `json:"title" example:"Concurrency conflict" binding:"required"`
	Status int    `json:"status" example:"409" binding:"required"`
	Detail string `json:"detail" example:"previous_id is not the stream's last event" binding:"required"`
	// The request's id, as in the X-Request-Id response header and the logs.
	RequestID string `json:"request_id,omitempty"`
	// Validation errors, one per field.
	Errors []FieldError `json:"errors,omitempty"`
	// Batch appends: the index of the first failing event.
	Index *int `json:"index,omitempty"`
	// Append errors: the failing event's event_id.
	EventID string `json:"event_id,omitempty" format:"uuid"`
	// Concurrency conflicts: the stream's last event_id now (null when the
	// stream is empty); re-read the stream from there and decide again.
	LastEventID *string `json:"last_event_id,omitempty" format:"uuid" extensions:"x-nullable"`
	// Failed conditions: the offset of the lowest event above the condition's
	// position that matches its query.
	Offset *int64 `json:"offset,omitempty" format:"int64"`
	// set when LastEventID must be written even if nil.
	conflict bool
} //@name Problem

// FieldError is one invalid field of a request.
type FieldError struct {
	// The field's JSON path, e.g. "events[2].event_id", or a query parameter.
	Field   string `json:"field" example:"event_id" binding:"required"`
	Message string `json:"message" example:"must be a UUID" binding:"required"`
} //@name FieldError

// MarshalJSON writes last_event_id as null on a conflict with an empty stream.
func (p Problem) MarshalJSON() ([]byte, error) {
	type plain Problem
	if !p.conflict || p.LastEventID != nil {
		return json.Marshal(plain(p))
	}
	return json.Marshal(struct {
		plain
		LastEventID *string `json:"last_event_id"`
	}{plain: plain(p)})
}

// problemKind is one row of the error table.
type problemKind struct {
	err    error
	status int
	slug   string
	title  string
}

// errorTable maps the store's sentinel errors to HTTP: the one place where
// an error gets its status.
var errorTable = []problemKind{
	{store.ErrNotFound, http.StatusNotFound, "not-found", "Not found"},
	{store.ErrNotRegistered, http.StatusUnprocessableEntity, "event-type-not-registered", "Event type not registered"},
	{store.ErrConcurrencyConflict, http.StatusConflict, "concurrency-conflict", "Concurrency conflict"},
	{store.ErrStreamFinal, http.StatusConflict, "stream-final", "Stream is final"},
	{store.ErrDuplicateEventID, http.StatusConflict, "duplicate-event-id", "Duplicate event id"},
	{store.ErrRegistrationConflict, http.StatusConflict, "registration-conflict", "Event type registered differently"},
	{store.ErrInvalid, http.StatusBadRequest, "invalid-request", "Invalid request"},
	{store.ErrConditionFailed, http.StatusConflict, "condition-failed", "Condition failed"},
	{store.ErrLeaseLost, http.StatusConflict, "lease-lost", "Lease lost"},
	{store.ErrNotHandedOut, http.StatusConflict, "offset-not-handed-out", "Offset not handed out in this lease"},
	{store.ErrNameNotRegistered, http.StatusUnprocessableEntity, "not-registered", "Name not registered"},
	{store.ErrPartitionLeased, http.StatusConflict, "partition-leased", "Partition is leased"},
	{store.ErrNotNextEvent, http.StatusConflict, "not-next-event", "Not the partition's next event"},
	{store.ErrAheadOfProgress, http.StatusBadRequest, "invalid-request", "Invalid request"},
	{store.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", "Database unavailable"},
}

// statusOf returns the HTTP status err is answered with (500 for an error
// the table does not know).
func statusOf(err error) int {
	var p *Problem
	if errors.As(err, &p) {
		return p.Status
	}
	for _, k := range errorTable {
		if errors.Is(err, k.err) {
			return k.status
		}
	}
	return http.StatusInternalServerError
}

// newProblem builds a problem of the given slug and status.
func newProblem(status int, slug, title, detail string) *Problem {
	return &Problem{Type: ProblemTypePrefix + slug, Title: title, Status: status, Detail: detail}
}

func badRequest(detail string, errs ...FieldError) *Problem {
	p := newProblem(http.StatusBadRequest, "invalid-request", "Invalid request", detail)
	p.Errors = errs
	return p
}

// problemFor converts any error into the problem the client sees. Errors the
// table does not know are internal: logged once, shown as a bare 500.
func problemFor(r *http.Request, err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	for _, k := range errorTable {
		if errors.Is(err, k.err) {
			p = newProblem(k.status, k.slug, k.title, err.Error())
			if k.status == http.StatusServiceUnavailable {
				p.Detail = "the database is unavailable; retry later"
			}
			addAppendDetails(p, err)
			var fieldErr *store.FieldError
			if errors.As(err, &fieldErr) {
				p.Errors = []FieldError{{Field: fieldErr.Field, Message: fieldErr.Message}}
			}
			return p
		}
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody reads this answer.
		return newProblem(499, "client-closed-request", "Client closed request", "the client closed the request")
	}
	hlog.FromRequest(r).Error().Err(err).Msg("internal error")
	return newProblem(http.StatusInternalServerError, "internal", "Internal server error",
		"an internal error occurred; quote the request_id when reporting it")
}

func addAppendDetails(p *Problem, err error) {
	var condErr *store.ConditionError
	if errors.As(err, &condErr) {
		p.Offset = &condErr.Offset
		p.Detail = condErr.Error() + "; nothing was stored"
		return
	}
	var appendErr *store.AppendError
	if !errors.As(err, &appendErr) {
		return
	}
	p.Detail = appendErr.Error()
	p.EventID = appendErr.EventID.String()
	if errors.Is(err, store.ErrConcurrencyConflict) {
		p.conflict = true
		if appendErr.LastEventID != nil {
			s := appendErr.LastEventID.String()
			p.LastEventID = &s
		}
	}
}

// writeProblem writes err as application/problem+json.
func writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	p := problemFor(r, err)
	if id, ok := hlog.IDFromRequest(r); ok {
		p.RequestID = id.String()
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	if p.Status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

// writeJSON writes v as the JSON response body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	if a, ok := v.(jsonAppender); ok {
		buf := buffers.Get().(*[]byte)
		b := append(a.appendJSON((*buf)[:0]), '\n')
		w.WriteHeader(status)
		// JSON with its strings HTML-escaped, as encoding/json writes it.
		_, _ = w.Write(b)    //nolint:gosec // G705: application/json, not HTML
		if cap(b) <= 1<<20 { // keep small buffers only
			*buf = b
			buffers.Put(buf)
		}
		return
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
