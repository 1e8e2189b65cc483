package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/fstore/fstore/internal/store"
)

// appendEventRequest is one event to append.
type appendEventRequest struct {
	// The event type, registered for the decider at event_version.
	Event string `json:"event" validate:"required,name" example:"order_placed"`
	// Chosen by the client, so that a retry is recognised.
	EventID string `json:"event_id" validate:"required,uuid36" example:"5f0e1c3a-8d4b-4c2e-9f6a-1b2c3d4e5f60" format:"uuid"`
	// Default 1.
	EventVersion *int64 `json:"event_version,omitempty" validate:"omitnil,min=1" example:"1" minimum:"1"`
	Decider      string `json:"decider" validate:"required,name" example:"order"`
	// The stream's business key.
	DeciderID string `json:"decider_id" validate:"required,name" example:"order-1042"`
	// The payload: any JSON value but null.
	Data json.RawMessage `json:"data" binding:"required" swaggertype:"object"`
	// Context beside the payload: who did it, from which request, which
	// schema. A JSON object of at most 64 KiB (whitespace aside); default {}.
	// When the request carries a W3C traceparent (and tracestate) header,
	// the event keeps it under those keys (the API's own request span when it
	// exports spans), unless the object sets them; pushes of the event send
	// it on. A retry is identical when all but those two keys are: they
	// describe the request, and a retry is a new one.
	Metadata json.RawMessage `json:"metadata,omitempty" swaggertype:"object"`
	// 0 to 100 tags, each 1 to 255 characters without control characters,
	// such as "course:c-1": queries select events by them. Stored sorted in
	// byte order, duplicates removed, so their order in a retry does not matter.
	Tags []string `json:"tags,omitempty" validate:"max=100" example:"course:c-1,student:s-7"`
	// The command (the request to the decider) that produced this event,
	// chosen by the client: every event of one decision carries the same
	// command_id, so a reader can tell which command caused which events.
	// fstore stores and returns it; it is part of what a retry must repeat.
	CommandID string `json:"command_id" validate:"required,uuid36" example:"0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f" format:"uuid"`
	// Required: null for a stream's first event, else the stream's last event_id.
	PreviousID nullableUUID `json:"previous_id" binding:"required" swaggertype:"string" format:"uuid" extensions:"x-nullable"`
	// true closes the stream: nothing may follow this event. Default false.
	Final bool `json:"final,omitempty"`
} //@name AppendEventRequest

// nullableUUID is a JSON field that must be present and may be null.
type nullableUUID struct {
	set   bool
	value *string
}

// UnmarshalJSON records that the field was present, null or not.
func (n *nullableUUID) UnmarshalJSON(b []byte) error {
	n.set = true
	if bytes.Equal(b, []byte("null")) {
		n.value = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &FieldError{Field: "previous_id", Message: "must be a UUID string or null"}
	}
	n.value = &s
	return nil
}

// appendBatchRequest is the body of POST /v1/events/batch.
type appendBatchRequest struct {
	Events []appendEventRequest `json:"events" validate:"required,min=1,max=1000,dive" minItems:"1" maxItems:"1000"`
	// Append only if no event matching condition.query has an offset above
	// condition.after (dynamic consistency boundaries).
	Condition *appendCondition `json:"condition,omitempty"`
} //@name AppendBatchRequest

// eventsResponse lists events, in input or offset order.
type eventsResponse struct {
	Events []store.Event `json:"events" binding:"required"`
} //@name EventList

// eventsPage is one page of a read.
type eventsPage struct {
	Events []store.Event `json:"events" binding:"required"`
	// Pass as after to read the next page; null when this page reached the
	// end of what can be read now (poll again later with the last offset seen).
	NextAfter *int64 `json:"next_after" extensions:"x-nullable" example:"1042" format:"int64" binding:"required"`
} //@name EventPage

// toNewEvent validates one request event (its JSON path is prefix) and
// converts it. It returns the field errors found.
func (req appendEventRequest) toNewEvent(prefix string) (store.NewEvent, []FieldError) {
	errs := validateStruct(req)
	for i := range errs {
		errs[i].Field = prefix + errs[i].Field
	}
	if msg := checkData(req.Data); msg != "" {
		errs = append(errs, FieldError{Field: prefix + "data", Message: msg})
	}
	metadata, msg := checkMetadata(req.Metadata)
	if msg != "" {
		errs = append(errs, FieldError{Field: prefix + "metadata", Message: msg})
	}
	errs = checkTags(errs, prefix, req.Tags)
	ev := store.NewEvent{Event: req.Event, EventVersion: 1, Decider: req.Decider, DeciderID: req.DeciderID,
		Data: req.Data, Metadata: metadata, Tags: req.Tags, Final: req.Final}
	switch {
	case !req.PreviousID.set:
		errs = append(errs, FieldError{Field: prefix + "previous_id",
			Message: "is required: null for a stream's first event, else the stream's last event_id"})
	case req.PreviousID.value != nil:
		id, ok := parseUUID(*req.PreviousID.value)
		if !ok {
			errs = append(errs, FieldError{Field: prefix + "previous_id", Message: uuidRule + ", or null"})
		}
		ev.PreviousID = &id
	}
	if req.EventVersion != nil {
		ev.EventVersion = *req.EventVersion
	}
	ev.EventID, _ = parseUUID(req.EventID) // validated above (uuid36)
	ev.CommandID, _ = parseUUID(req.CommandID)
	return ev, errs
}

// appendEvent godoc
//
//	@Summary		Append one event
//	@Description	Appends an event to its stream (decider, decider_id) with optimistic locking: previous_id must be the stream's last event_id (null for the first event). Sending an event that is already stored with identical content returns it with 200, so a client may retry safely.
//	@Tags			events
//	@ID				appendEvent
//	@Accept			json
//	@Produce		json
//	@Param			body	body		appendEventRequest	true	"The event"
//	@Success		201		{object}	store.Event			"Stored"
//	@Success		200		{object}	store.Event			"Stored already (a retry)"
//	@Failure		400		{object}	Problem
//	@Failure		409		{object}	Problem	"concurrency-conflict (with last_event_id), stream-final or duplicate-event-id"
//	@Failure		413		{object}	Problem
//	@Failure		422		{object}	Problem	"The event type is not registered for the decider and version"
//	@Failure		415		{object}	Problem	"Body is not application/json"
//	@Failure		403		{object}	Problem	"The API key is read-only"
//	@Failure		401		{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503		{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/events [post]
func (s *Server) appendEvent(w http.ResponseWriter, r *http.Request) {
	var req appendEventRequest
	if err := decodeJSON(w, r, s.opts.MaxBodyBytes, &req); err != nil {
		writeProblem(w, r, err)
		return
	}
	ev, errs := req.toNewEvent("")
	if len(errs) > 0 {
		writeProblem(w, r, badRequest("the event is invalid", errs...))
		return
	}
	if parent, state := traceContext(r); parent != "" {
		ev.Metadata = withTraceContext(ev.Metadata, parent, state)
	}
	res, err := s.store.AppendEvents(r.Context(), []store.NewEvent{ev})
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	w.Header().Set("Location", "/v1/events/"+res.Events[0].EventID.String())
	writeJSON(w, status, oneEvent{&res.Events[0]})
}

// appendBatch godoc
//
//	@Summary		Append events atomically
//	@Description	Appends 1 to 1000 events in one transaction, all or nothing. They may belong to several streams; a later event of a stream may name an earlier one of the batch as its previous_id. On failure the problem carries the index of the first failing event and nothing is stored. A batch whose every event is already stored identically returns 200 (a retry).
//	@Description	With a condition, the batch is appended only if no event matching condition.query has an offset above condition.after (the position of a POST /v1/events/query read), and every previous_id holds too; otherwise 409 condition-failed with the offending event's offset, and nothing is stored.
//	@Tags			events
//	@ID				appendEvents
//	@Accept			json
//	@Produce		json
//	@Param			body	body		appendBatchRequest	true	"The events"
//	@Success		201		{object}	eventsResponse		"Stored, in input order"
//	@Success		200		{object}	eventsResponse		"Stored already (a retry)"
//	@Failure		400		{object}	Problem
//	@Failure		409		{object}	Problem	"concurrency-conflict, stream-final or duplicate-event-id, with index; condition-failed, with offset"
//	@Failure		413		{object}	Problem
//	@Failure		422		{object}	Problem	"An event type is not registered, with index"
//	@Failure		415		{object}	Problem	"Body is not application/json"
//	@Failure		403		{object}	Problem	"The API key is read-only"
//	@Failure		401		{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503		{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/events/batch [post]
func (s *Server) appendBatch(w http.ResponseWriter, r *http.Request) {
	var req appendBatchRequest
	if err := decodeJSON(w, r, s.opts.MaxBodyBytes, &req); err != nil {
		writeProblem(w, r, err)
		return
	}
	if n := len(req.Events); n == 0 || n > maxBatchEvents {
		writeProblem(w, r, badRequest("a batch holds 1 to 1000 events",
			FieldError{Field: "events", Message: fmt.Sprintf("must have 1 to %d items, not %d", maxBatchEvents, n)}))
		return
	}
	evs := make([]store.NewEvent, len(req.Events))
	seen := make(map[uuid.UUID]int, len(req.Events))
	for i, er := range req.Events {
		prefix := fmt.Sprintf("events[%d].", i)
		ev, errs := er.toNewEvent(prefix)
		if j, dup := seen[ev.EventID]; dup && len(errs) == 0 {
			errs = append(errs, FieldError{Field: prefix + "event_id", Message: fmt.Sprintf("repeats events[%d].event_id", j)})
		}
		if len(errs) > 0 {
			p := badRequest(fmt.Sprintf("event %d is invalid", i), errs...)
			p.Index = &i
			writeProblem(w, r, p)
			return
		}
		seen[ev.EventID] = i
		evs[i] = ev
	}
	if parent, state := traceContext(r); parent != "" {
		for i := range evs {
			evs[i].Metadata = withTraceContext(evs[i].Metadata, parent, state)
		}
	}
	var res store.AppendResult
	var err error
	if req.Condition != nil {
		cond, errs := req.Condition.toStore()
		if len(errs) > 0 {
			writeProblem(w, r, badRequest("the condition is invalid", errs...))
			return
		}
		res, err = s.store.AppendEventsIf(r.Context(), evs, cond)
	} else {
		res, err = s.store.AppendEvents(r.Context(), evs)
	}
	if err != nil {
		p := problemFor(r, err)
		var appendErr *store.AppendError
		if errors.As(err, &appendErr) {
			p.Index = &appendErr.Index
			p.Detail = fmt.Sprintf("events[%d]: %s; nothing was stored", appendErr.Index, p.Detail)
		}
		writeProblem(w, r, p)
		return
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, eventsResponse{Events: res.Events})
}

// readEvents godoc
//
//	@Summary		Read events
//	@Description	Events in offset order: of one stream (decider and decider_id), of every stream of a decider (decider alone), or of the whole log (neither); with tag (repeatable), only those that carry every tag given; events= keeps only some types. Page with after: it never skips an event, even one whose transaction commits late. With a read standby configured (FSTORE_READ_DATABASE_URL), reads of a decider or of the whole log may be served by the standby, a few milliseconds behind; a stream is always read on the primary.
//	@Description	Follow the log live: with Accept: text/event-stream (Server-Sent Events) or application/x-ndjson, the answer sends every selected event after the cursor in offset order, then stays open and sends new events as they commit, never skipping a late one; a heartbeat at least every 15 s. SSE frames carry id: <offset> and data: <the event>; a reconnecting EventSource resumes from its Last-Event-ID. The last frame says why the stream ended (SSE event: error; NDJSON {"error": ...}) with the after to follow again from. No limit; 503 beyond FSTORE_MAX_SUBSCRIBERS followers. Live follows read the primary.
//	@Tags			events
//	@ID				readEvents
//	@Produce		json
//	@Param			decider			query		string		false	"Decider name"
//	@Param			decider_id		query		string		false	"Stream key (needs decider)"
//	@Param			tag				query		[]string	false	"A tag the events must carry; repeat it for several (all must be present), at most 100"	collectionFormat(multi)
//	@Param			after			query		integer		false	"Exclusive offset cursor"	minimum(0)	default(0)	format(int64)
//	@Param			limit			query		integer		false	"Page size (JSON reads only)"	minimum(1)	maximum(10000)	default(1000)
//	@Param			events			query		string		false	"Event types (at most 100), comma-separated or the parameter repeated: only events of these types"	example(order_placed,order_shipped)
//	@Param			Last-Event-ID	header		integer		false	"Live follows: the id of the last event received; takes the place of after (an EventSource sends it when it reconnects)"	format(int64)
//	@Param			access_token	query		string		false	"Live follows only: the API key, for clients that cannot send headers (EventSource). It ends up in proxies' and servers' access logs (fstore's own redacts it): prefer Authorization"
//	@Success		200				{object}	eventsPage	"A page of events (application/json); or, live, a stream of them (text/event-stream, application/x-ndjson)"
//	@Failure		400				{object}	Problem
//	@Failure		401				{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503				{object}	Problem	"Database unavailable, or too-many-subscribers (live follows: FSTORE_MAX_SUBSCRIBERS reached; see Retry-After)"
//	@Header			503				{string}	Retry-After	"Seconds to wait before following again (too-many-subscribers)"
//	@Security		bearer
//	@Router			/v1/events [get]
func (s *Server) readEvents(w http.ResponseWriter, r *http.Request) {
	rq, errs := readQueryOf(r.URL.Query())
	if format := liveFormatOf(r); format != nil {
		s.followEvents(w, r, format, rq, errs)
		return
	}
	if len(errs) > 0 {
		writeProblem(w, r, badRequest("invalid query parameters", errs...))
		return
	}
	evs, err := s.store.ReadEvents(r.Context(), rq)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	page := eventsPage{Events: evs}
	if len(evs) == rq.Limit {
		page.NextAfter = &evs[len(evs)-1].Offset
	}
	writeJSON(w, http.StatusOK, page)
}

// readQueryOf validates the query parameters of GET /v1/events.
func readQueryOf(q url.Values) (store.ReadQuery, []FieldError) {
	var errs []FieldError
	rq := store.ReadQuery{Decider: q.Get("decider"), DeciderID: q.Get("decider_id"), Limit: defaultReadLimit}
	if q.Has("decider") && !validName(rq.Decider) {
		errs = append(errs, FieldError{Field: "decider", Message: nameRule})
	}
	if q.Has("decider_id") {
		switch {
		case !validName(rq.DeciderID):
			errs = append(errs, FieldError{Field: "decider_id", Message: nameRule})
		case !q.Has("decider"):
			errs = append(errs, FieldError{Field: "decider_id", Message: "needs decider: a stream is (decider, decider_id)"})
		}
	}
	rq.Tags = q["tag"]
	if len(rq.Tags) > maxQueryTags {
		errs = append(errs, FieldError{Field: "tag", Message: fmt.Sprintf("must be given at most %d times", maxQueryTags)})
	}
	for _, t := range rq.Tags {
		if !validName(t) {
			errs = append(errs, FieldError{Field: "tag", Message: nameRule})
			break
		}
	}
	var fe *FieldError
	if rq.After, fe = intParam(q, "after", 0, 0, 1<<62); fe != nil {
		errs = append(errs, *fe)
	}
	limit, fe := intParam(q, "limit", defaultReadLimit, 1, maxReadLimit)
	if fe != nil {
		errs = append(errs, *fe)
	}
	rq.Limit = int(limit)
	rq.Events, fe = eventTypesParam(q)
	if fe != nil {
		errs = append(errs, *fe)
	}
	return rq, errs
}

// eventTypesParam parses events=a,b (repeatable): 1 to 100 event types.
func eventTypesParam(q url.Values) ([]string, *FieldError) {
	if !q.Has("events") {
		return nil, nil
	}
	var types []string
	for _, v := range q["events"] {
		for _, t := range strings.Split(v, ",") {
			if !validName(t) {
				return nil, &FieldError{Field: "events", Message: "must list event types separated by commas, each " + nameRule}
			}
			types = append(types, t)
		}
	}
	if len(types) > maxQueryTypes {
		return nil, &FieldError{Field: "events", Message: fmt.Sprintf("must list at most %d event types", maxQueryTypes)}
	}
	return types, nil
}

// lastEvent godoc
//
//	@Summary	Get the last event of a stream
//	@Tags		events
//	@ID			getLastEvent
//	@Produce	json
//	@Param		decider		query		string	true	"Decider name"
//	@Param		decider_id	query		string	true	"Stream key"
//	@Success	200			{object}	store.Event
//	@Failure	400			{object}	Problem
//	@Failure	404			{object}	Problem	"The stream is empty"
//	@Failure		401		{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503		{object}	Problem	"Database unavailable"
//	@Security	bearer
//	@Router		/v1/events/last [get]
func (s *Server) lastEvent(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var errs []FieldError
	for _, name := range []string{"decider", "decider_id"} {
		if !validName(q.Get(name)) {
			errs = append(errs, FieldError{Field: name, Message: "is required and " + nameRule})
		}
	}
	if len(errs) > 0 {
		writeProblem(w, r, badRequest("invalid query parameters", errs...))
		return
	}
	ev, err := s.store.LastEvent(r.Context(), q.Get("decider"), q.Get("decider_id"))
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, oneEvent{&ev})
}

// getEvent godoc
//
//	@Summary	Get one event
//	@Tags		events
//	@ID			getEvent
//	@Produce	json
//	@Param		event_id	path		string	true	"Event id"	format(uuid)
//	@Success	200			{object}	store.Event
//	@Failure	400			{object}	Problem
//	@Failure	404			{object}	Problem
//	@Failure		401		{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503		{object}	Problem	"Database unavailable"
//	@Security	bearer
//	@Router		/v1/events/{event_id} [get]
func (s *Server) getEvent(w http.ResponseWriter, r *http.Request) {
	id, ok := parseUUID(chi.URLParam(r, "event_id"))
	if !ok {
		writeProblem(w, r, badRequest("invalid event id", FieldError{Field: "event_id", Message: uuidRule}))
		return
	}
	ev, err := s.store.GetEvent(r.Context(), id)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, oneEvent{&ev})
}
