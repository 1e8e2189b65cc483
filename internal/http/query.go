package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/fstore/fstore/internal/store"
)

// Bounds of a query: enough for any decision, small enough that a query
// cannot make PostgreSQL plan for long.
const (
	maxQueryItems   = 100
	maxQueryTypes   = 100
	maxQueryTags    = 100
	maxQueryMatches = 20
)

// eventQuery selects events by type, tags and payload (dynamic consistency
// boundaries): the query of the DCB specification. Items are OR-ed.
type eventQuery struct {
	// 1 to 100 alternatives: an event matches the query when it matches one.
	Items []queryItem `json:"items" binding:"required,min=1,max=100"`
} //@name EventQuery

// queryItem matches an event whose type is one of types (when given), that
// carries every one of tags (when given) and whose data contains every one
// of matches (when given): the query item of the DCB specification, with
// matches besides. {} matches every event.
type queryItem struct {
	// Event types, OR-ed. Omit to match any type.
	Types []string `json:"types,omitempty" binding:"omitempty,min=1,max=100" example:"copy_lent,copy_returned"`
	// Tags the event must all carry, AND-ed (1 to 100). Omit to match any tags.
	Tags []string `json:"tags,omitempty" minItems:"1" maxItems:"100" example:"copy:c-1"`
	// JSON objects the event's data must contain (PostgreSQL's @>), AND-ed:
	// {"copy_id": "c-1"} matches data with that field and value, whatever
	// else it holds. Omit to match any data.
	Matches []json.RawMessage `json:"matches,omitempty" swaggertype:"array,object" binding:"omitempty,min=1,max=20"`
} //@name QueryItem

// queryRequest is the body of POST /v1/events/query.
type queryRequest struct {
	Query *eventQuery `json:"query" binding:"required"`
	// Exclusive offset cursor. Default 0.
	After int64 `json:"after,omitempty" minimum:"0" format:"int64"`
	// Page size, 1 to 10000. Default 1000.
	Limit *int `json:"limit,omitempty" minimum:"1" maximum:"10000" default:"1000"`
	// true: stay open and send matching events as they commit (with Accept:
	// text/event-stream or application/x-ndjson; no limit).
	Follow bool `json:"follow,omitempty"`
} //@name QueryEventsRequest

// queryPage is one page of a query's events.
type queryPage struct {
	Events []store.Event `json:"events" binding:"required"`
	// Pass as after to read the next page; null when this page is the last.
	NextAfter *int64 `json:"next_after" extensions:"x-nullable" example:"1042" format:"int64" binding:"required"`
	// The highest offset this read covers: every matching event at or below
	// it is in this page or an earlier one. Use the last page's position as
	// the after of a condition. Read from a hot standby
	// (FSTORE_READ_DATABASE_URL) it may be a little behind the primary's:
	// still a correct condition, if one more likely to fail.
	Position int64 `json:"position" example:"1042" format:"int64" binding:"required"`
} //@name QueryEventsPage

// appendCondition makes a batch conditional.
type appendCondition struct {
	Query *eventQuery `json:"query" binding:"required"`
	// The position a query returned: the batch is refused when an event
	// matching the query has an offset above it.
	After *int64 `json:"after" binding:"required" minimum:"0" format:"int64" example:"1042"`
} //@name AppendCondition

// toStore validates q (its JSON path is prefix) and converts it.
func (q *eventQuery) toStore(prefix string) (store.Query, []FieldError) {
	if q == nil {
		return store.Query{}, []FieldError{{Field: prefix, Message: `is required: {"items": [...]}`}}
	}
	var errs []FieldError
	bad := func(field, msg string) { errs = append(errs, FieldError{Field: prefix + "." + field, Message: msg}) }
	if n := len(q.Items); n == 0 || n > maxQueryItems {
		bad("items", fmt.Sprintf("must have 1 to %d items", maxQueryItems))
	}
	out := store.Query{Items: make([]store.QueryItem, len(q.Items))}
	for i, it := range q.Items {
		at := fmt.Sprintf("items[%d].", i)
		if it.Types != nil && (len(it.Types) == 0 || len(it.Types) > maxQueryTypes) {
			bad(at+"types", fmt.Sprintf("must have 1 to %d event types; omit it to match any type", maxQueryTypes))
		}
		for j, t := range it.Types {
			if !validName(t) {
				bad(fmt.Sprintf("%stypes[%d]", at, j), nameRule)
			}
		}
		if it.Tags != nil && (len(it.Tags) == 0 || len(it.Tags) > maxQueryTags) {
			bad(at+"tags", fmt.Sprintf("must have 1 to %d tags; omit it to match any tags", maxQueryTags))
		}
		for j, t := range it.Tags {
			if !validName(t) {
				bad(fmt.Sprintf("%stags[%d]", at, j), nameRule)
			}
		}
		if it.Matches != nil && (len(it.Matches) == 0 || len(it.Matches) > maxQueryMatches) {
			bad(at+"matches", fmt.Sprintf("must have 1 to %d objects; omit it to match any data", maxQueryMatches))
		}
		for j, m := range it.Matches {
			if msg := checkMatch(m); msg != "" {
				bad(fmt.Sprintf("%smatches[%d]", at, j), msg)
			}
		}
		out.Items[i] = store.QueryItem{Types: it.Types, Tags: it.Tags, Matches: it.Matches}
	}
	return out, errs
}

// checkMatch returns why m is not a usable match, or "".
func checkMatch(m json.RawMessage) string {
	if msg := checkData(m); msg != "" {
		return msg
	}
	var fields map[string]json.RawMessage
	if !bytes.HasPrefix(bytes.TrimSpace(m), []byte("{")) || json.Unmarshal(m, &fields) != nil {
		return `must be a JSON object, such as {"copy_id": "c-1"}`
	}
	if len(fields) == 0 {
		return "must name at least one field ({} would match any object)"
	}
	return ""
}

// queryEvents godoc
//
//	@Summary		Query events by type, tags and payload
//	@Description	The events matching a query, across streams, in offset order: items are OR-ed; within an item, types are OR-ed, tags AND-ed and matches (JSON containment on data) AND-ed. This is the query model of the DCB specification (dcb.events), with matches besides. The answer's position is the highest offset the read covers; pass it as a batch's condition.after to append only if no matching event was stored since (dynamic consistency boundaries). Reads never skip an event whose transaction commits late.
//	@Description	Follow a query live: "follow": true with Accept: text/event-stream or application/x-ndjson sends the matching events after the cursor, then new ones as they commit, as GET /v1/events does (no limit, no position). Unlike GET /v1/events, it takes no ?access_token=: that is for EventSource, which cannot send headers, and cannot POST either; send Authorization: Bearer.
//	@Tags			events
//	@ID				queryEvents
//	@Accept			json
//	@Produce		json
//	@Param			body			body		queryRequest	true	"The query"
//	@Param			Last-Event-ID	header		integer			false	"Live follows: the id of the last event received; takes the place of after"	format(int64)
//	@Success		200				{object}	queryPage		"A page of events (application/json); or, with follow, a stream of them (text/event-stream, application/x-ndjson)"
//	@Failure		400				{object}	Problem
//	@Failure		413				{object}	Problem
//	@Failure		415				{object}	Problem	"Body is not application/json"
//	@Failure		401				{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503				{object}	Problem	"Database unavailable, or too-many-subscribers (live follows; see Retry-After)"
//	@Header			503				{string}	Retry-After	"Seconds to wait before following again (too-many-subscribers)"
//	@Security		bearer
//	@Router			/v1/events/query [post]
func (s *Server) queryEvents(w http.ResponseWriter, r *http.Request) {
	var req queryRequest
	if err := decodeJSON(w, r, s.opts.MaxBodyBytes, &req); err != nil {
		writeProblem(w, r, err)
		return
	}
	q, errs := req.Query.toStore("query")
	if req.After < 0 {
		errs = append(errs, FieldError{Field: "after", Message: "must be 0 or more"})
	}
	limit := defaultReadLimit
	if req.Limit != nil {
		limit = *req.Limit
		if limit < 1 || limit > maxReadLimit {
			errs = append(errs, FieldError{Field: "limit", Message: fmt.Sprintf("must be an integer from 1 to %d", maxReadLimit)})
		}
	}
	if format := liveFormatOf(r); format != nil || req.Follow {
		s.followQuery(w, r, format, req, q, errs)
		return
	}
	if len(errs) > 0 {
		writeProblem(w, r, badRequest("the query is invalid", errs...))
		return
	}
	res, err := s.store.QueryEvents(r.Context(), q, req.After, limit)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	page := queryPage{Events: res.Events, Position: res.Position}
	if res.More {
		page.NextAfter = &res.Position
	}
	writeJSON(w, http.StatusOK, page)
}

// toStore validates a batch's condition and converts it.
func (c *appendCondition) toStore() (store.Condition, []FieldError) {
	q, errs := c.Query.toStore("condition.query")
	switch {
	case c.After == nil:
		errs = append(errs, FieldError{Field: "condition.after", Message: "is required: the position a query returned"})
	case *c.After < 0:
		errs = append(errs, FieldError{Field: "condition.after", Message: "must be 0 or more"})
	default:
		return store.Condition{Query: q, After: *c.After}, errs
	}
	return store.Condition{}, errs
}

// followQuery answers a query that asks for a stream: "follow": true with
// a streaming Accept, no limit; Last-Event-ID takes the place of after.
func (s *Server) followQuery(w http.ResponseWriter, r *http.Request, format *liveFormat, req queryRequest, q store.Query, errs []FieldError) {
	switch {
	case format == nil:
		errs = append(errs, FieldError{Field: "follow", Message: "streams: send Accept: text/event-stream or application/x-ndjson"})
	case !req.Follow:
		errs = append(errs, FieldError{Field: "follow", Message: "must be true to stream a query (or ask for application/json)"})
	}
	if req.Limit != nil {
		errs = append(errs, FieldError{Field: "limit", Message: "pages a JSON read: a live follow sends every event, omit it"})
	}
	after := req.After
	if id, ok, fe := lastEventID(r); fe != nil {
		errs = append(errs, *fe)
	} else if ok {
		after = id
	}
	if len(errs) > 0 {
		writeProblem(w, r, badRequest("the query is invalid", errs...))
		return
	}
	s.follow(w, r, format, store.Filter{Query: &q}, after)
}
