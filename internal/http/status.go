package httpapi

import (
	"net/http"
	"time"

	"github.com/fstore/fstore/internal/store"
)

// Access levels a key may have, as GET /v1/status names them.
const (
	accessReadWrite = "read-write"
	accessReadOnly  = "read-only"
)

// statusBody is GET /v1/status: what an operator's overview needs besides
// the views, cheap enough to sample every few seconds.
type statusBody struct {
	// What the key of this request may do: read-write, or read-only (reads
	// and consumes; appends, registrations, skip, replay and retry answer 403).
	// read-write when the server has no FSTORE_API_KEYS.
	Access string `json:"access" enums:"read-write,read-only" example:"read-write" binding:"required"`
	// The database's clock when it read the log's last offset: the rate is
	// the difference of two samples' last_offset over the difference of
	// their times, whichever API process answered each.
	Time time.Time       `json:"time" format:"date-time" binding:"required"`
	Log  store.LogStatus `json:"log" binding:"required"`
	// Every dispatcher process seen within the last day (a process that
	// stopped cleanly is removed), healthy ones first; at most 100.
	Dispatchers []store.DispatcherStatus `json:"dispatchers" binding:"required"`
} //@name ServerStatus

// getStatus godoc
//
//	@Summary		The log's size, the dispatchers' health and this key's access
//	@Description	For dashboards and the console: the newest committed offset and an estimate of the event count (from PostgreSQL's statistics, never a count), the dispatcher processes from their heartbeats (each records one every 5 s; healthy = seen within three of its intervals), and whether this request's key is read-only. Constant cost at any size of the log.
//	@Tags			operations
//	@ID				getStatus
//	@Produce		json
//	@Success		200	{object}	statusBody
//	@Failure		401	{object}	Problem	"Missing or invalid API key (when the server has FSTORE_API_KEYS)"
//	@Failure		503	{object}	Problem	"Database unavailable"
//	@Security		bearer
//	@Router			/v1/status [get]
func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	body := statusBody{Access: accessReadWrite}
	if r.Context().Value(accessKey{}) == accessReadOnly {
		body.Access = accessReadOnly
	}
	var err error
	if body.Log, err = s.store.LogStatus(r.Context()); err != nil {
		writeProblem(w, r, err)
		return
	}
	if body.Dispatchers, err = s.store.ListDispatchers(r.Context()); err != nil {
		writeProblem(w, r, err)
		return
	}
	if body.Dispatchers == nil {
		body.Dispatchers = []store.DispatcherStatus{}
	}
	body.Time = body.Log.At.UTC()
	writeJSON(w, http.StatusOK, body)
}
