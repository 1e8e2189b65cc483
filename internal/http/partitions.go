package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/fstore/fstore/internal/store"
)

// Partition list and attempt bounds.
const (
	defaultPartitionLimit = 100
	maxPartitionLimit     = 1000
	defaultAttemptLimit   = 20
	maxAttemptLimit       = 100
)

// partitionList is a page of a view's partitions.
type partitionList struct {
	Partitions []store.PartitionState `json:"partitions" binding:"required"`
	// The cursor of the next page (pass it as after); null on the last page.
	NextAfter *string `json:"next_after" extensions:"x-nullable" binding:"required" example:"WyJvcmRlciIsIm9yZGVyLTEwNDIiXQ"`
} //@name PartitionList

// attemptList is a partition's most recent attempts, newest first.
type attemptList struct {
	Attempts []store.Attempt `json:"attempts" binding:"required"`
} //@name AttemptList

// skipRequest is the body of POST .../skip.
type skipRequest struct {
	// The offset of the partition's next event, the one to skip.
	Offset int64 `json:"offset" validate:"required,min=1" minimum:"1" example:"1042" format:"int64"`
} //@name SkipRequest

// replayRequest is the body of POST .../replay.
type replayRequest struct {
	// Deliver again the partition's events after this offset; at most the
	// partition's acked_offset. Before the view's start: from the start.
	After *int64 `json:"after" validate:"required,min=0" minimum:"0" example:"0" format:"int64" binding:"required"`
} //@name ReplayRequest

// retried says how many partitions were un-parked.
type retried struct {
	Retried int64 `json:"retried" format:"int64" binding:"required" example:"2"`
} //@name Retried

// encodeCursor makes the opaque cursor of the partition after which a page ends.
func encodeCursor(p store.Partition) string {
	b, _ := json.Marshal([2]string{p.Decider, p.DeciderID})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (decider, deciderID string, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	var key [2]string
	if err != nil || json.Unmarshal(b, &key) != nil || !validName(key[0]) || !validName(key[1]) {
		return "", "", false
	}
	return key[0], key[1], true
}

// listPartitions godoc
//
//	@Summary		List a view's partitions
//	@Description	Pages through the view's partitions in a stable order (decider, then decider_id). state filters them: all (the streams in the view's scope), behind (matching events not yet acked), leased (leased now), failing (the next event failed at least once; parked ones included) or parked. after is the opaque next_after of the previous page. A page costs its state's partitions, not the view's size: all reads the view in order from the cursor, failing and parked read only the partitions in trouble, behind and leased read every partition behind after the cursor, sorted; none reads the partitions caught up. A read-only key may list.
//	@Tags			partitions
//	@ID				listPartitions
//	@Produce		json
//	@Param			view	path		string	true	"View name"
//	@Param			state	query		string	false	"Which partitions"	Enums(all, behind, leased, failing, parked)	default(all)
//	@Param			after	query		string	false	"The cursor next_after of the previous page"
//	@Param			limit	query		int		false	"Partitions per page"	minimum(1)	maximum(1000)	default(100)
//	@Success		200		{object}	partitionList
//	@Failure		400		{object}	Problem
//	@Failure		404		{object}	Problem	"Unknown view"
//	@Failure		401		{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503		{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/views/{view}/partitions [get]
func (s *Server) listPartitions(w http.ResponseWriter, r *http.Request) {
	name, err := pathParam(r, "view")
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	q := r.URL.Query()
	pq := store.PartitionQuery{State: store.StateAll}
	var errs []FieldError
	if q.Has("state") {
		pq.State = q.Get("state")
		if !slices.Contains(store.PartitionStates, pq.State) {
			errs = append(errs, FieldError{Field: "state", Message: "must be one of " + strings.Join(store.PartitionStates, ", ")})
		}
	}
	if q.Has("after") {
		decider, deciderID, ok := decodeCursor(q.Get("after"))
		if !ok {
			errs = append(errs, FieldError{Field: "after", Message: "must be the next_after of a previous page"})
		}
		pq.AfterDecider, pq.AfterDeciderID = &decider, &deciderID
	}
	limit, fe := intParam(q, "limit", defaultPartitionLimit, 1, maxPartitionLimit)
	if fe != nil {
		errs = append(errs, *fe)
	}
	if len(errs) > 0 {
		writeProblem(w, r, badRequest("invalid query parameter", errs...))
		return
	}
	pq.Limit = int(limit) + 1 // one more tells whether a next page exists
	ps, err := s.store.ListPartitions(r.Context(), name, pq)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	page := partitionList{Partitions: ps}
	if len(ps) > int(limit) {
		page.Partitions = ps[:limit]
		next := encodeCursor(ps[limit-1].Partition)
		page.NextAfter = &next
	}
	writeJSON(w, http.StatusOK, page)
}

// partitionPath reads the view, decider and decider_id of a partition route.
func partitionPath(r *http.Request) (view, decider, deciderID string, err error) {
	if view, err = pathParam(r, "view"); err != nil {
		return
	}
	if decider, err = pathParam(r, "decider"); err != nil {
		return
	}
	deciderID, err = pathParam(r, "decider_id")
	return
}

// getPartition godoc
//
//	@Summary		Get a partition
//	@Description	One partition's progress and failure, with next_event: the event it waits on (null when caught up). A read-only key may read it.
//	@Tags			partitions
//	@ID				getPartition
//	@Produce		json
//	@Param			view		path		string	true	"View name"
//	@Param			decider		path		string	true	"Decider name"
//	@Param			decider_id	path		string	true	"Stream key"
//	@Success		200			{object}	store.PartitionDetail
//	@Failure		400			{object}	Problem
//	@Failure		404			{object}	Problem	"Unknown view or partition"
//	@Failure		401			{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503			{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/views/{view}/partitions/{decider}/{decider_id} [get]
func (s *Server) getPartition(w http.ResponseWriter, r *http.Request) {
	view, decider, deciderID, err := partitionPath(r)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	d, err := s.store.PartitionDetail(r.Context(), view, decider, deciderID)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// listAttempts godoc
//
//	@Summary		List a partition's attempts
//	@Description	The partition's most recent attempts, newest first: every push the dispatcher tried (status, error, duration, the first 1 KiB of the answer), nacks that said why, and skips. The last 100 per partition are kept, for at most FSTORE_ATTEMPT_RETENTION. A read-only key may read them.
//	@Tags			partitions
//	@ID				listAttempts
//	@Produce		json
//	@Param			view		path		string	true	"View name"
//	@Param			decider		path		string	true	"Decider name"
//	@Param			decider_id	path		string	true	"Stream key"
//	@Param			limit		query		int		false	"Attempts at most"	minimum(1)	maximum(100)	default(20)
//	@Success		200			{object}	attemptList
//	@Failure		400			{object}	Problem
//	@Failure		404			{object}	Problem	"Unknown view or partition"
//	@Failure		401			{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503			{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/views/{view}/partitions/{decider}/{decider_id}/attempts [get]
func (s *Server) listAttempts(w http.ResponseWriter, r *http.Request) {
	view, decider, deciderID, err := partitionPath(r)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	limit, fe := intParam(r.URL.Query(), "limit", defaultAttemptLimit, 1, maxAttemptLimit)
	if fe != nil {
		writeProblem(w, r, badRequest("invalid query parameter", *fe))
		return
	}
	as, err := s.store.Attempts(r.Context(), view, decider, deciderID, int(limit))
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	if as == nil {
		as = []store.Attempt{}
	}
	writeJSON(w, http.StatusOK, attemptList{Attempts: as})
}

// skipEvent godoc
//
//	@Summary		Skip a partition's next event
//	@Description	Settles the partition's next event without delivering it (a poison event): offset must be that event's (next_event.offset of the partition). Refused while the partition is leased. Un-parks the partition, ends its failure, and records the skip as an attempt. Answers the partition with its new next_event.
//	@Tags			partitions
//	@ID				skipEvent
//	@Accept			json
//	@Produce		json
//	@Param			view		path		string		true	"View name"
//	@Param			decider		path		string		true	"Decider name"
//	@Param			decider_id	path		string		true	"Stream key"
//	@Param			body		body		skipRequest	true	"The event to skip"
//	@Success		200			{object}	store.PartitionDetail
//	@Failure		400			{object}	Problem
//	@Failure		404			{object}	Problem	"Unknown view or partition"
//	@Failure		409			{object}	Problem	"partition-leased, or not-next-event"
//	@Failure		413			{object}	Problem	"Body larger than FSTORE_MAX_BODY_BYTES"
//	@Failure		415			{object}	Problem	"Body is not application/json"
//	@Failure		403			{object}	Problem	"The API key is read-only"
//	@Failure		401			{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503			{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/views/{view}/partitions/{decider}/{decider_id}/skip [post]
func (s *Server) skipEvent(w http.ResponseWriter, r *http.Request) {
	view, decider, deciderID, err := partitionPath(r)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	var req skipRequest
	if err := decodeAndValidate(w, r, s.opts.MaxBodyBytes, &req); err != nil {
		writeProblem(w, r, err)
		return
	}
	d, err := s.store.SkipEvent(r.Context(), view, decider, deciderID, req.Offset)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// replayPartition godoc
//
//	@Summary		Replay a partition
//	@Description	Moves the partition's progress back so that its matching events after `after` are delivered again. after may not be ahead of the partition's acked_offset (a replay never moves progress past what was handed out); an after before the view's start replays from the start. Refused while the partition is leased.
//	@Tags			partitions
//	@ID				replayPartition
//	@Accept			json
//	@Produce		json
//	@Param			view		path		string			true	"View name"
//	@Param			decider		path		string			true	"Decider name"
//	@Param			decider_id	path		string			true	"Stream key"
//	@Param			body		body		replayRequest	true	"Where to replay from"
//	@Success		200			{object}	store.PartitionDetail
//	@Failure		400			{object}	Problem	"Invalid, or after is ahead of the partition's progress"
//	@Failure		404			{object}	Problem	"Unknown view or partition"
//	@Failure		409			{object}	Problem	"partition-leased"
//	@Failure		413			{object}	Problem	"Body larger than FSTORE_MAX_BODY_BYTES"
//	@Failure		415			{object}	Problem	"Body is not application/json"
//	@Failure		403			{object}	Problem	"The API key is read-only"
//	@Failure		401			{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503			{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/views/{view}/partitions/{decider}/{decider_id}/replay [post]
func (s *Server) replayPartition(w http.ResponseWriter, r *http.Request) {
	view, decider, deciderID, err := partitionPath(r)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	var req replayRequest
	if err := decodeAndValidate(w, r, s.opts.MaxBodyBytes, &req); err != nil {
		writeProblem(w, r, err)
		return
	}
	d, err := s.store.ReplayPartition(r.Context(), view, decider, deciderID, *req.After)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// retryParked godoc
//
//	@Summary		Un-park every parked partition of a view
//	@Description	Every parked partition's next event is delivered again now. Answers how many were un-parked.
//	@Tags			partitions
//	@ID				retryParked
//	@Produce		json
//	@Param			view	path		string	true	"View name"
//	@Success		200		{object}	retried
//	@Failure		400		{object}	Problem
//	@Failure		404		{object}	Problem	"Unknown view"
//	@Failure		403		{object}	Problem	"The API key is read-only"
//	@Failure		401		{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503		{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/views/{view}/retry [post]
func (s *Server) retryParked(w http.ResponseWriter, r *http.Request) {
	name, err := pathParam(r, "view")
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	n, err := s.store.RetryParked(r.Context(), name)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, retried{Retried: n})
}

// retryPartition godoc
//
//	@Summary	Un-park a partition
//	@Tags		views
//	@ID			retryPartition
//	@Produce	json
//	@Param		view		path		string	true	"View name"
//	@Param		decider		path		string	true	"Decider name"
//	@Param		decider_id	path		string	true	"Stream key"
//	@Success	200			{object}	store.Partition
//	@Failure	400			{object}	Problem
//	@Failure	404			{object}	Problem	"Unknown view or partition"
//	@Failure	403			{object}	Problem	"The API key is read-only"
//	@Failure	401			{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure	503			{object}	Problem	"Database unavailable"
//	@Security	bearer
//	@Router		/v1/views/{view}/partitions/{decider}/{decider_id}/retry [post]
func (s *Server) retryPartition(w http.ResponseWriter, r *http.Request) {
	name, err := pathParam(r, "view")
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	decider, err := pathParam(r, "decider")
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	deciderID, err := pathParam(r, "decider_id")
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	p, err := s.store.RetryPartition(r.Context(), name, decider, deciderID)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}
