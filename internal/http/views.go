package httpapi

import (
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/fstore/fstore/internal/netguard"
	"github.com/fstore/fstore/internal/store"
)

// Stream call bounds.
const (
	maxLeaseLimit   = 1000
	maxWait         = 30 * time.Second
	recheckInterval = time.Second // leases expire and nacks come due without an append
)

// registerViewRequest is the body of PUT /v1/views/{view}.
type registerViewRequest struct {
	// Deliver events created from this time on; not in the future. Omitted:
	// now for a new view, unchanged for an existing one. Another start_at
	// than the view's moves every partition's progress to it (replay or skip).
	StartAt *timestamp `json:"start_at,omitempty" swaggertype:"string" format:"date-time"`
	// Lease length in seconds; default 300.
	LockTimeoutS *int64 `json:"lock_timeout_s,omitempty" validate:"omitnil,min=1,max=86400" minimum:"1" maximum:"86400" example:"60"`
	// For the dispatcher: how often, in seconds, to look for this view's
	// work when it hears of no new event (retries come due, leases expire).
	// Default: its poll interval (1 s).
	PollingDelayS *int64 `json:"polling_delay_s,omitempty" validate:"omitnil,min=1,max=86400" minimum:"1" maximum:"86400" example:"5"`
	// Deprecated: the same as polling_delay_s, under fstore-sql's misspelt
	// name; accepted so that old clients keep working.
	PoolingDelayS *int64 `json:"pooling_delay_s,omitempty" validate:"omitnil,min=0,max=86400" minimum:"0" maximum:"86400" extensions:"x-deprecated"`
	// For the dispatcher: where to push this view's events (http or https).
	EdgeFunctionURL *string `json:"edge_function_url,omitempty" validate:"omitnil,max=2048" example:"https://example.com/hooks/orders"`
	// The Standard Webhooks signing secret: whsec_ + base64 of 24 to 64
	// bytes. Omitted: the view keeps its secret, or gets a new one.
	Secret *string `json:"secret,omitempty" example:"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"`
	// Take only the events of these deciders (1 to 100 registered names).
	// Omitted or null: every decider. Changing the list keeps progress.
	Deciders []string `json:"deciders,omitempty" validate:"omitnil,min=1,max=100,dive,name" minItems:"1" maxItems:"100" extensions:"x-nullable" example:"order"`
	// Take only events of these types (1 to 100 names, each registered for
	// a listed decider). Omitted or null: every type.
	Events []string `json:"events,omitempty" validate:"omitnil,min=1,max=100,dive,name" minItems:"1" maxItems:"100" extensions:"x-nullable" example:"order-placed"`
} //@name RegisterViewRequest

// viewList lists views.
type viewList struct {
	Views []store.View `json:"views" binding:"required"`
} //@name ViewList

// streamRequest is the body of POST /v1/views/{view}/stream (optional).
type streamRequest struct {
	// Partitions to lease at most; default 1.
	Limit *int `json:"limit,omitempty" validate:"omitnil,min=1,max=1000" minimum:"1" maximum:"1000" example:"10"`
	// Lease length in seconds; default the view's lock_timeout_s.
	LockTimeoutS *int64 `json:"lock_timeout_s,omitempty" validate:"omitnil,min=1,max=86400" minimum:"1" maximum:"86400"`
	// Consecutive events of one partition at most; default 1.
	MaxPerPartition *int `json:"max_per_partition,omitempty" validate:"omitnil,min=1,max=1000" minimum:"1" maximum:"1000" example:"10"`
	// Seconds to wait for work when there is none; default 0.
	WaitS *float64 `json:"wait_s,omitempty" validate:"omitnil,min=0,max=30" minimum:"0" maximum:"30" example:"10"`
} //@name StreamRequest

// leasedEvents is a stream call's answer.
type leasedEvents struct {
	Events []store.LeasedEvent `json:"events" binding:"required"`
} //@name LeasedEventList

// ackRequest is the body of POST /v1/views/{view}/ack.
type ackRequest struct {
	Decider   string `json:"decider" validate:"required,name" example:"order"`
	DeciderID string `json:"decider_id" validate:"required,name" example:"order-1042"`
	// Processed up to and including this offset, one handed out in the lease.
	Offset  int64  `json:"offset" validate:"required,min=1" minimum:"1" example:"1042" format:"int64"`
	LeaseID string `json:"lease_id" validate:"required,uuid36" format:"uuid"`
} //@name AckRequest

// nackRequest is the body of POST /v1/views/{view}/nack.
type nackRequest struct {
	Decider   string `json:"decider" validate:"required,name" example:"order"`
	DeciderID string `json:"decider_id" validate:"required,name" example:"order-1042"`
	LeaseID   string `json:"lease_id" validate:"required,uuid36" format:"uuid"`
	// Lease the partition again only after this many milliseconds; default 0.
	RetryAfterMs *int64 `json:"retry_after_ms,omitempty" validate:"omitnil,min=0,max=86400000" minimum:"0" maximum:"86400000"`
	// Why the events were not processed (at most 1,024 characters): it
	// becomes the partition's last_error and is recorded as an attempt, as
	// a failed push is. Omitted: the nack is counted, nothing recorded.
	Error *string `json:"error,omitempty" validate:"omitnil,min=1,max=1024" example:"database timeout"`
} //@name NackRequest

// registerView godoc
//
//	@Summary		Register or update a view
//	@Description	A view is a consumer group over the log; every stream is a partition leased by one consumer at a time. Re-registering with the same (or no) start_at keeps every partition's progress; another start_at replays or skips to that time. A view with an edge_function_url has a signing secret, returned here (and only here).
//	@Tags			views
//	@ID				registerView
//	@Accept			json
//	@Produce		json
//	@Param			view	path		string				true	"View name"
//	@Param			body	body		registerViewRequest	true	"The view"
//	@Success		201		{object}	store.View			"Registered"
//	@Success		200		{object}	store.View			"Updated"
//	@Failure		400		{object}	Problem
//	@Failure		413		{object}	Problem	"Body larger than FSTORE_MAX_BODY_BYTES"
//	@Failure		415		{object}	Problem	"Body is not application/json"
//	@Failure		403		{object}	Problem	"The API key is read-only"
//	@Failure		401		{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503		{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/views/{view} [put]
func (s *Server) registerView(w http.ResponseWriter, r *http.Request) {
	name, err := pathParam(r, "view")
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	var req registerViewRequest
	if err := decodeAndValidate(w, r, s.opts.MaxBodyBytes, &req); err != nil {
		writeProblem(w, r, err)
		return
	}
	var errs []FieldError
	var startAt *time.Time
	if req.StartAt != nil {
		startAt = &req.StartAt.Time
	}
	if startAt != nil && startAt.After(time.Now().Add(time.Minute)) {
		errs = append(errs, FieldError{Field: "start_at", Message: "must not be in the future"})
	}
	if req.EdgeFunctionURL != nil {
		if err := netguard.CheckURL(*req.EdgeFunctionURL, s.opts.AllowPrivateURLs); err != nil {
			errs = append(errs, FieldError{Field: "edge_function_url", Message: err.Error()})
		}
	}
	polling := req.PollingDelayS
	if req.PoolingDelayS != nil && *req.PoolingDelayS > 0 { // 0 meant "the default"
		if polling != nil && *polling != *req.PoolingDelayS {
			errs = append(errs, FieldError{Field: "pooling_delay_s", Message: "is the old name of polling_delay_s: send one of the two"})
		}
		polling = req.PoolingDelayS
	}
	if req.Secret != nil && !validSecret(*req.Secret) {
		errs = append(errs, FieldError{Field: "secret", Message: "must be whsec_ followed by the base64 of 24 to 64 bytes"})
	}
	if len(errs) > 0 {
		writeProblem(w, r, badRequest("the view is invalid", errs...))
		return
	}
	reg := store.ViewRegistration{View: name, StartAt: startAt, LockTimeoutS: 300,
		PollingDelayS: polling, EdgeFunctionURL: req.EdgeFunctionURL, Secret: req.Secret,
		Deciders: req.Deciders, Events: req.Events}
	if req.LockTimeoutS != nil {
		reg.LockTimeoutS = *req.LockTimeoutS
	}
	v, created, err := s.store.RegisterView(r.Context(), reg)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, v)
}

// listViews godoc
//
//	@Summary		List views with their status
//	@Description	Every view with its status, as GET /v1/views/{view} gives it, read for all views at once: the same few statements whatever the number of views.
//	@Tags			views
//	@ID				listViews
//	@Produce		json
//	@Success		200	{object}	viewList
//	@Failure		401	{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503	{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/views [get]
func (s *Server) listViews(w http.ResponseWriter, r *http.Request) {
	vs, err := s.store.ListViews(r.Context())
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewList{Views: vs})
}

// getView godoc
//
//	@Summary		Get a view and its status
//	@Description	The status counts partitions, partitions behind, events pending (the lag), partitions leased now, failing and parked, and the last delivery error. It costs the partitions behind or failing and the events pending, not the partitions caught up.
//	@Tags			views
//	@ID				getView
//	@Produce		json
//	@Param			view	path		string	true	"View name"
//	@Success		200		{object}	store.View
//	@Failure		400		{object}	Problem
//	@Failure		404		{object}	Problem
//	@Failure		401		{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503		{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/views/{view} [get]
func (s *Server) getView(w http.ResponseWriter, r *http.Request) {
	name, err := pathParam(r, "view")
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	v, err := s.store.GetView(r.Context(), name)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// deleteView godoc
//
//	@Summary	Delete a view and its progress
//	@Tags		views
//	@ID			deleteView
//	@Param		view	path	string	true	"View name"
//	@Success	204
//	@Failure	400	{object}	Problem
//	@Failure	404	{object}	Problem
//	@Failure	403	{object}	Problem	"The API key is read-only"
//	@Failure	401	{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure	503	{object}	Problem	"Database unavailable"
//	@Security	bearer
//	@Router		/v1/views/{view} [delete]
func (s *Server) deleteView(w http.ResponseWriter, r *http.Request) {
	name, err := pathParam(r, "view")
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	if err := s.store.DeleteView(r.Context(), name); err != nil {
		writeProblem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// streamEvents godoc
//
//	@Summary		Lease work
//	@Description	Leases up to limit partitions that have work, each with up to max_per_partition consecutive events, in offset order; every event carries its partition's lease_id. A partition is leased by one consumer at a time until it is acked, nacked or its lease expires. With wait_s, waits up to that long for work to appear. The body is optional.
//	@Tags			views
//	@ID				streamEvents
//	@Accept			json
//	@Produce		json
//	@Param			view	path		string			true	"View name"
//	@Param			body	body		streamRequest	false	"What to lease"
//	@Success		200		{object}	leasedEvents
//	@Failure		400		{object}	Problem
//	@Failure		404		{object}	Problem	"Unknown view"
//	@Failure		413		{object}	Problem	"Body larger than FSTORE_MAX_BODY_BYTES"
//	@Failure		415		{object}	Problem	"Body is not application/json"
//	@Failure		401		{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503		{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/views/{view}/stream [post]
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request) {
	name, err := pathParam(r, "view")
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	var req streamRequest
	if r.ContentLength != 0 {
		if err := decodeAndValidate(w, r, s.opts.MaxBodyBytes, &req); err != nil {
			writeProblem(w, r, err)
			return
		}
	}
	lr := store.LeaseRequest{Limit: 1, MaxPerPartition: 1}
	if req.Limit != nil {
		lr.Limit = *req.Limit
	}
	if req.MaxPerPartition != nil {
		lr.MaxPerPartition = *req.MaxPerPartition
	}
	if req.LockTimeoutS != nil {
		lr.LockTimeout = time.Duration(*req.LockTimeoutS) * time.Second
	}
	var wait time.Duration
	if req.WaitS != nil {
		wait = time.Duration(*req.WaitS * float64(time.Second))
	}
	evs, err := s.leaseOrWait(r, name, lr, wait)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	if evs == nil {
		evs = []store.LeasedEvent{}
	}
	writeJSON(w, http.StatusOK, leasedEvents{Events: evs})
}

// leaseOrWait leases work; when there is none it waits up to wait for the
// log to move (or a lease to expire), without holding a connection.
func (s *Server) leaseOrWait(r *http.Request, view string, lr store.LeaseRequest, wait time.Duration) ([]store.LeasedEvent, error) {
	deadline := time.Now().Add(wait)
	for {
		// Watch before leasing: an append between the two still wakes us.
		changed, release := s.store.WatchLog()
		evs, err := s.store.LeaseEvents(r.Context(), view, lr)
		remaining := time.Until(deadline)
		if err != nil || len(evs) > 0 || remaining <= 0 {
			release()
			return evs, err
		}
		timer := time.NewTimer(min(remaining, recheckInterval))
		stopping := false
		select {
		case <-changed:
		case <-timer.C:
		case <-r.Context().Done():
		case <-s.stopping:
			stopping = true
		}
		timer.Stop()
		release()
		if r.Context().Err() != nil {
			return nil, r.Context().Err()
		}
		if stopping {
			return nil, nil
		}
	}
}

// ackEvent godoc
//
//	@Summary		Acknowledge events
//	@Description	The partition is processed up to and including offset, which must have been handed out in the lease; releases the lease. Repeating the last ack of a lease is harmless.
//	@Tags			views
//	@ID				ackEvent
//	@Accept			json
//	@Produce		json
//	@Param			view	path		string		true	"View name"
//	@Param			body	body		ackRequest	true	"What was processed"
//	@Success		200		{object}	store.Partition
//	@Failure		400		{object}	Problem
//	@Failure		404		{object}	Problem	"Unknown view or partition"
//	@Failure		409		{object}	Problem	"lease-lost, or offset-not-handed-out"
//	@Failure		413		{object}	Problem	"Body larger than FSTORE_MAX_BODY_BYTES"
//	@Failure		415		{object}	Problem	"Body is not application/json"
//	@Failure		401		{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503		{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/views/{view}/ack [post]
func (s *Server) ackEvent(w http.ResponseWriter, r *http.Request) {
	name, err := pathParam(r, "view")
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	var req ackRequest
	if err := decodeAndValidate(w, r, s.opts.MaxBodyBytes, &req); err != nil {
		writeProblem(w, r, err)
		return
	}
	p, err := s.store.Ack(r.Context(), name, req.Decider, req.DeciderID, req.Offset, uuid.MustParse(req.LeaseID))
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// nackEvent godoc
//
//	@Summary		Give events back
//	@Description	Not processed: releases the lease without progress, at once or so that the partition is leased again only after retry_after_ms.
//	@Tags			views
//	@ID				nackEvent
//	@Accept			json
//	@Produce		json
//	@Param			view	path		string		true	"View name"
//	@Param			body	body		nackRequest	true	"The lease to give back"
//	@Success		200		{object}	store.Partition
//	@Failure		400		{object}	Problem
//	@Failure		404		{object}	Problem	"Unknown view or partition"
//	@Failure		409		{object}	Problem	"lease-lost"
//	@Failure		413		{object}	Problem	"Body larger than FSTORE_MAX_BODY_BYTES"
//	@Failure		415		{object}	Problem	"Body is not application/json"
//	@Failure		401		{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503		{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/views/{view}/nack [post]
func (s *Server) nackEvent(w http.ResponseWriter, r *http.Request) {
	name, err := pathParam(r, "view")
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	var req nackRequest
	if err := decodeAndValidate(w, r, s.opts.MaxBodyBytes, &req); err != nil {
		writeProblem(w, r, err)
		return
	}
	var delay time.Duration
	if req.RetryAfterMs != nil {
		delay = time.Duration(*req.RetryAfterMs) * time.Millisecond
	}
	var reason string
	if req.Error != nil {
		reason = *req.Error
	}
	p, err := s.store.Nack(r.Context(), name, req.Decider, req.DeciderID, uuid.MustParse(req.LeaseID), delay, reason)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// validSecret reports whether s is a Standard Webhooks secret; the format is
// the store's, which the dispatcher signs with.
func validSecret(s string) bool {
	_, err := store.SecretKey(s)
	return err == nil
}
