package httpapi

import (
	"net/http"

	"github.com/fstore/fstore/internal/store"
)

// registerEventTypeRequest is the body of POST /v1/deciders/{decider}/events.
type registerEventTypeRequest struct {
	// The event type's name.
	Event string `json:"event" validate:"required,name" example:"order_placed"`
	// The schema version of the event type; default 1.
	EventVersion *int64 `json:"event_version,omitempty" validate:"omitnil,min=1" example:"1" minimum:"1"`
	// What the event means; default "".
	Description *string `json:"description,omitempty" validate:"omitnil,max=10000" example:"A customer placed an order"`
} //@name RegisterEventTypeRequest

// eventTypeResponse is one registration.
type eventTypeResponse struct {
	Decider      string `json:"decider" example:"order" binding:"required"`
	Event        string `json:"event" example:"order_placed" binding:"required"`
	EventVersion int64  `json:"event_version" example:"1" binding:"required"`
	Description  string `json:"description" example:"A customer placed an order" binding:"required"`
} //@name EventTypeRegistration

// decidersResponse lists deciders.
type decidersResponse struct {
	Deciders []store.Decider `json:"deciders" binding:"required"`
} //@name DeciderList

// registerEventType godoc
//
//	@Summary		Register an event type of a decider
//	@Description	Registers an event type (at a schema version) that the decider may publish; events can only be appended with registered types. Registering an identical type again is harmless (200).
//	@Tags			deciders
//	@ID				registerEventType
//	@Accept			json
//	@Produce		json
//	@Param			decider	path		string						true	"Decider name"
//	@Param			body	body		registerEventTypeRequest	true	"The event type"
//	@Success		201		{object}	eventTypeResponse			"Registered"
//	@Success		200		{object}	eventTypeResponse			"Already registered identically"
//	@Failure		400		{object}	Problem
//	@Failure		409		{object}	Problem	"Registered with another description (registration-conflict)"
//	@Failure		413		{object}	Problem	"Body larger than FSTORE_MAX_BODY_BYTES"
//	@Failure		415		{object}	Problem	"Body is not application/json"
//	@Failure		403		{object}	Problem	"The API key is read-only"
//	@Failure		401		{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503		{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/deciders/{decider}/events [post]
func (s *Server) registerEventType(w http.ResponseWriter, r *http.Request) {
	decider, err := pathParam(r, "decider")
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	var req registerEventTypeRequest
	if err := decodeAndValidate(w, r, s.opts.MaxBodyBytes, &req); err != nil {
		writeProblem(w, r, err)
		return
	}
	t := store.EventType{Decider: decider, Event: req.Event, EventVersion: 1}
	if req.EventVersion != nil {
		t.EventVersion = *req.EventVersion
	}
	if req.Description != nil {
		t.Description = *req.Description
	}
	got, created, err := s.store.RegisterEventType(r.Context(), t)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, eventTypeResponse{Decider: got.Decider, Event: got.Event, EventVersion: got.EventVersion,
		Description: got.Description})
}

// listDeciders godoc
//
//	@Summary	List deciders and their event types
//	@Tags		deciders
//	@ID			listDeciders
//	@Produce	json
//	@Success	200	{object}	decidersResponse
//	@Failure		401		{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503		{object}	Problem	"Database unavailable"
//	@Security	bearer
//	@Router		/v1/deciders [get]
func (s *Server) listDeciders(w http.ResponseWriter, r *http.Request) {
	ds, err := s.store.ListDeciders(r.Context())
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, decidersResponse{Deciders: ds})
}

// getDecider godoc
//
//	@Summary	Get one decider and its event types
//	@Tags		deciders
//	@ID			getDecider
//	@Produce	json
//	@Param		decider	path		string	true	"Decider name"
//	@Success	200		{object}	store.Decider
//	@Failure	400		{object}	Problem
//	@Failure	404		{object}	Problem	"No event type is registered for this decider"
//	@Failure		401		{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503		{object}	Problem	"Database unavailable"
//	@Security	bearer
//	@Router		/v1/deciders/{decider} [get]
func (s *Server) getDecider(w http.ResponseWriter, r *http.Request) {
	decider, err := pathParam(r, "decider")
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	d, err := s.store.GetDecider(r.Context(), decider)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}
