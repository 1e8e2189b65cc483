package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fstore/fstore/internal/store"
)

// Following the log live: GET /v1/events and POST /v1/events/query (with
// "follow": true) answer Accept: text/event-stream (Server-Sent Events) or
// application/x-ndjson with every selected event from the cursor on, then
// stay open and send new events as they commit. The store's Follower does
// the ordering and the waiting; this file writes frames.

// Defaults of live follows.
const (
	// DefaultMaxSubscribers bounds the live followers of one process.
	DefaultMaxSubscribers = 1000
	// DefaultHeartbeat is how long a live response stays silent at most
	// (give or take a write): well within the 15 s the API promises.
	DefaultHeartbeat = 10 * time.Second
	// DefaultLiveWriteTimeout bounds every write of a live response: a
	// client that takes nothing for this long is cut off. It replaces the
	// server's WriteTimeout, which would end every live response after 60 s.
	DefaultLiveWriteTimeout = 30 * time.Second
	// subscriberRetryAfter is the Retry-After of a refused subscriber, in s.
	subscriberRetryAfter = "5"
	// stopWriteGrace bounds a live write once the server stops: a client
	// that stopped reading must not hold up the shutdown for a whole
	// write timeout.
	stopWriteGrace = time.Second
)

// liveFormat is how a live response writes its frames.
type liveFormat struct {
	contentType string
	sse         bool
}

var (
	formatSSE    = &liveFormat{contentType: "text/event-stream; charset=utf-8", sse: true}
	formatNDJSON = &liveFormat{contentType: "application/x-ndjson"}
)

// liveFormatOf returns the streaming format the request asks for, or nil
// for a plain JSON answer. A stream is chosen when its media type is named
// (wildcards do not count) and preferred to application/json: a client
// that lists every media type of the operation at one quality (a generated
// SDK) gets the JSON page, which ends, not a stream that never does.
func liveFormatOf(r *http.Request) *liveFormat {
	best, bestQ, jsonQ := (*liveFormat)(nil), 0.0, 0.0
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(v, 64); err != nil {
				continue
			}
		}
		switch mt {
		case "text/event-stream":
			if q > bestQ {
				best, bestQ = formatSSE, q
			}
		case "application/x-ndjson":
			if q > bestQ {
				best, bestQ = formatNDJSON, q
			}
		case "application/json":
			jsonQ = max(jsonQ, q)
		}
	}
	if best == nil || bestQ <= 0 || jsonQ >= bestQ {
		return nil
	}
	return best
}

// lastEventID returns the cursor a reconnecting EventSource sends, if any.
func lastEventID(r *http.Request) (int64, bool, *FieldError) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		return 0, false, nil
	}
	after, err := strconv.ParseInt(v, 10, 64)
	if err != nil || after < 0 {
		return 0, false, &FieldError{Field: "Last-Event-ID", Message: "must be the id (an offset) of an event this API sent"}
	}
	return after, true, nil
}

// followEvents answers GET /v1/events asking for a stream: the same
// parameters as the JSON read (and its 400s), but no limit, and a
// reconnecting EventSource's Last-Event-ID in place of after.
func (s *Server) followEvents(w http.ResponseWriter, r *http.Request, format *liveFormat, rq store.ReadQuery, errs []FieldError) {
	if r.URL.Query().Has("limit") {
		errs = append(errs, FieldError{Field: "limit", Message: "pages a JSON read: a live follow sends every event, omit it"})
	}
	if after, ok, fe := lastEventID(r); fe != nil {
		errs = append(errs, *fe)
	} else if ok {
		rq.After = after
	}
	if len(errs) > 0 {
		writeProblem(w, r, badRequest("invalid query parameters", errs...))
		return
	}
	s.follow(w, r, format, store.Filter{Decider: rq.Decider, DeciderID: rq.DeciderID, Events: rq.Events, Tags: rq.Tags},
		rq.After)
}

// accessTokenParam takes the API key of a live follow of GET /v1/events
// from ?access_token=, for EventSource, which cannot send headers, and
// passes it on as the Authorization header. Anywhere else the parameter is
// refused (a client that can POST can send headers): a key in a URL lands
// in proxies' and servers' access logs (fstore's own log redacts it).
func accessTokenParam(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if !q.Has("access_token") {
			next.ServeHTTP(w, r)
			return
		}
		switch {
		case r.Method != http.MethodGet || r.URL.Path != "/v1/events" || liveFormatOf(r) == nil:
			writeProblem(w, r, badRequest("access_token is for live follows only", FieldError{Field: "access_token",
				Message: "is taken only by live follows of GET /v1/events (Accept: text/event-stream or application/x-ndjson): send Authorization: Bearer <key>"}))
			return
		case r.Header.Get("Authorization") != "":
			writeProblem(w, r, badRequest("the API key was sent twice", FieldError{Field: "access_token",
				Message: "must not be sent with an Authorization header: send the key once"}))
			return
		}
		token := q.Get("access_token")
		q.Del("access_token")
		r = r.Clone(r.Context())
		r.URL.RawQuery = q.Encode()
		r.Header.Set("Authorization", "Bearer "+token)
		next.ServeHTTP(w, r)
	})
}

// follow answers a validated live request: the events f selects above
// after, in format, until the client leaves, falls behind or the server
// stops.
func (s *Server) follow(w http.ResponseWriter, r *http.Request, format *liveFormat, f store.Filter, after int64) {
	if n := s.subscribers.Add(1); n > int64(s.opts.MaxSubscribers) {
		s.subscribers.Add(-1)
		w.Header().Set("Retry-After", subscriberRetryAfter)
		p := newProblem(http.StatusServiceUnavailable, "too-many-subscribers", "Too many subscribers",
			"this API process serves "+strconv.Itoa(s.opts.MaxSubscribers)+" live followers already: retry later, or on another instance")
		writeProblem(w, r, p)
		return
	}
	s.metrics.subscribers.Inc()
	defer func() { s.subscribers.Add(-1); s.metrics.subscribers.Dec() }()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	lw := &liveWriter{w: w, rc: http.NewResponseController(w), format: format, after: after,
		timeout: s.opts.LiveWriteTimeout, stop: s.stopCtx}
	//nolint:contextcheck // StopWaiting ends the request's follow
	defer context.AfterFunc(s.stopCtx, func() {
		cancel()
		lw.stopping() // a write blocked now ends within the grace
	})()
	fl, err := s.store.Follow(ctx, f, after)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	defer fl.Close()
	// The first page (or the news that there is none) before the status,
	// when it comes within a second: a database down is then still a 503.
	// (A match PostgreSQL refuses was refused by Follow: a 400 always.)
	evs, err := fl.Next(ctx, min(s.opts.Heartbeat, time.Second))
	if err != nil {
		if s.stopCtx.Err() != nil && r.Context().Err() == nil {
			err = store.ErrUnavailable
		}
		writeProblem(w, r, err)
		return
	}
	lw.start(r)
	for {
		for _, e := range evs {
			lw.event(e)
		}
		if lw.flush() != nil {
			return
		}
		if evs, err = fl.Next(ctx, s.opts.Heartbeat); err != nil {
			s.endFollow(r, lw, err)
			return
		}
		if len(evs) == 0 && time.Since(lw.flushed) >= s.opts.Heartbeat/2 {
			lw.heartbeat() // not when Next returned on catching up
		}
	}
}

// start writes the status and headers of a live response, and buffers the
// SSE retry hint.
func (lw *liveWriter) start(r *http.Request) {
	h := lw.w.Header()
	h.Set("Content-Type", lw.format.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: pass frames through at once
	if r.ProtoMajor == 1 {
		// No chunked framing: the body ends when the connection closes, as
		// the SSE specification recommends. A flush is then one write to
		// the socket, not three (chunk header, data, trailer).
		h.Set("Transfer-Encoding", "identity")
	}
	// net/http lifts the read deadline itself once the body is read; the
	// write deadline is each flush's.
	lw.w.WriteHeader(http.StatusOK)
	if lw.format.sse {
		// Reconnect after 1 to 3 s: clients of a restarted server spread out.
		lw.buf = append(lw.buf, "retry: "...)
		lw.buf = strconv.AppendInt(lw.buf, 1000+rand.Int64N(2000), 10)
		lw.buf = append(lw.buf, "\n\n"...)
	}
}

// endFollow sends the final frame saying why the follow ends, unless the
// client left.
func (s *Server) endFollow(r *http.Request, lw *liveWriter, err error) {
	var slug, title, detail string
	switch {
	case r.Context().Err() != nil:
		return // the client left
	case s.stopCtx.Err() != nil:
		slug, title, detail = "shutting-down", "Shutting down", "this API process is stopping: follow again"
	case errors.Is(err, store.ErrFellBehind):
		slug, title = "subscriber-too-slow", "Subscriber too slow"
		detail = "more than " + strconv.Itoa(store.MaxBehind) + " new events waited for this client: follow again"
	default: // as the error table says, logged once when internal
		p := problemFor(r, err)
		slug, title, detail = strings.TrimPrefix(p.Type, ProblemTypePrefix), p.Title, p.Detail+": follow again"
	}
	lw.final(slug, title, detail+" with after (or Last-Event-ID) "+strconv.FormatInt(lw.after, 10))
	_ = lw.flush()
}

// liveWriter writes frames into a buffer and flushes it in one write.
type liveWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	format  *liveFormat
	buf     []byte
	after   int64     // the last offset sent: where to follow again from
	flushed time.Time // the last write
	timeout time.Duration
	stop    context.Context // done when the server stops

	mu       sync.Mutex // the deadline: the server's stop sets it too
	deadline time.Time  // the write deadline set
}

// stopping cuts the write deadline to stopWriteGrace from now, for a write
// under way too. Safe to call while another goroutine writes.
func (lw *liveWriter) stopping() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if d := time.Now().Add(stopWriteGrace); lw.deadline.IsZero() || lw.deadline.After(d) {
		lw.deadline = d
		_ = lw.rc.SetWriteDeadline(d) // a net.Conn's deadline may be set while it writes
	}
}

// moveDeadline gives the next write the write timeout; the deadline is
// moved only when half of it has passed, not for every one of a thousand
// followers' frames. Once the server stops, it is only ever shortened.
func (lw *liveWriter) moveDeadline() error {
	if lw.stop.Err() != nil {
		lw.stopping()
		return nil
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	now := time.Now()
	if lw.deadline.Sub(now) >= lw.timeout/2 {
		return nil
	}
	lw.deadline = now.Add(lw.timeout)
	if err := lw.rc.SetWriteDeadline(lw.deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

func (lw *liveWriter) event(e store.LiveEvent) {
	if lw.format.sse {
		lw.buf = append(lw.buf, "id: "...)
		lw.buf = strconv.AppendInt(lw.buf, e.Offset, 10)
		lw.buf = append(lw.buf, "\ndata: "...)
		lw.buf = append(lw.buf, e.JSON...)
		lw.buf = append(lw.buf, "\n\n"...)
	} else {
		lw.buf = append(lw.buf, e.JSON...)
		lw.buf = append(lw.buf, '\n')
	}
	lw.after = e.Offset
}

func (lw *liveWriter) heartbeat() {
	now := time.Now().UTC().Format(time.RFC3339)
	if lw.format.sse {
		lw.buf = append(lw.buf, ": heartbeat "+now+"\n\n"...)
	} else {
		lw.buf = append(lw.buf, `{"heartbeat":"`+now+`"}`+"\n"...)
	}
}

// final writes the last frame: an SSE error event, or an NDJSON error line.
func (lw *liveWriter) final(slug, title, detail string) {
	body := liveError{Type: ProblemTypePrefix + slug, Title: title, Detail: detail, After: lw.after}
	if lw.format.sse {
		lw.buf = append(lw.buf, "event: error\ndata: "...)
		lw.buf = appendJSONValue(lw.buf, body)
		lw.buf = append(lw.buf, "\n\n"...)
	} else {
		lw.buf = appendJSONValue(lw.buf, liveErrorLine{Error: body})
		lw.buf = append(lw.buf, '\n')
	}
}

// flush writes the buffered frames. A write may take from half of the
// write timeout to all of it (see moveDeadline).
func (lw *liveWriter) flush() error {
	if err := lw.moveDeadline(); err != nil {
		return err
	}
	if len(lw.buf) > 0 {
		_, err := lw.w.Write(lw.buf)
		lw.flushed = time.Now()
		if cap(lw.buf) > 64<<10 {
			lw.buf = nil // a catch-up page, a burst: not kept by a thousand idle clients
		} else {
			lw.buf = lw.buf[:0]
		}
		if err != nil {
			return err
		}
	}
	return lw.rc.Flush() // the status and headers too, the first time
}

// liveError is the final frame of a live response (SSE: the data of an
// "error" event): why it ended, and where to follow again from.
type liveError struct {
	// urn:fstore:problem:subscriber-too-slow (it fell behind), shutting-down
	// (the server stops), or the type of the error that ended it
	// (unavailable, internal, …).
	Type   string `json:"type" example:"urn:fstore:problem:subscriber-too-slow"`
	Title  string `json:"title" example:"Subscriber too slow"`
	Detail string `json:"detail"`
	// The offset of the last event sent, or the request's cursor when none
	// was: follow again with after (or Last-Event-ID) set to it.
	After int64 `json:"after" example:"1042"`
}

// liveErrorLine is the final line of an NDJSON live response.
type liveErrorLine struct {
	Error liveError `json:"error"`
}

// appendJSONValue appends the JSON of v, a value of this package that
// always encodes.
func appendJSONValue(dst []byte, v any) []byte {
	b, _ := json.Marshal(v)
	return append(dst, b...)
}
