package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
)

// chainOK appends n events to one new stream of decider and returns them.
func (a *api) chainOK(decider, deciderID string, n int) []map[string]any {
	a.t.Helper()
	var out []map[string]any
	prev := ""
	for range n {
		e := a.appendOK(event(decider, deciderID, prev))
		prev = e["event_id"].(string)
		out = append(out, e)
	}
	return out
}

func offsetOf(e map[string]any) string { return fmt.Sprint(int64(e["offset"].(float64))) }

func TestFollowSSE(t *testing.T) {
	t.Parallel()
	a, _ := newLiveAPI(t, httpapi.Options{}, nil)
	a.register("order", "created")
	a.register("invoice", "created")
	stored := a.chainOK("order", "o-1", 2)
	a.chainOK("invoice", "i-1", 1)

	st := a.get("/v1/events?decider=order", acceptSSE)
	assert.Equal(t, "text/event-stream; charset=utf-8", st.resp.Header.Get("Content-Type"))
	assert.Equal(t, "no-cache", st.resp.Header.Get("Cache-Control"))
	assert.Equal(t, "no", st.resp.Header.Get("X-Accel-Buffering"))
	assert.Empty(t, st.resp.TransferEncoding, "not chunked: the body ends with the connection")
	first, ok := st.frame()
	require.True(t, ok)
	retry, err := strconv.Atoi(first.Retry)
	require.NoError(t, err, "the first block is a retry hint")
	assert.GreaterOrEqual(t, retry, 1000)

	plain := a.rawEvents("/v1/events?decider=order")
	require.Len(t, plain, 2)
	for i, raw := range plain {
		f := st.event()
		assert.Equal(t, offsetOf(stored[i]), f.ID, "the id is the offset")
		assert.Equal(t, string(raw), f.Data, "the data is the event as the JSON read returns it")
	}
	// Live: a new event of the decider arrives, another decider's does not.
	a.chainOK("invoice", "i-2", 1)
	live := a.chainOK("order", "o-2", 1)[0]
	f := st.event()
	assert.Equal(t, offsetOf(live), f.ID)
	assert.Equal(t, string(a.rawEvents("/v1/events?decider=order&decider_id=o-2")[0]), f.Data)
	// Silence: heartbeats.
	beat, ok := st.frame()
	require.True(t, ok)
	assert.True(t, strings.HasPrefix(beat.Comment, "heartbeat "), "a heartbeat comment, not %+v", beat)

	// An EventSource reconnecting sends Last-Event-ID, which wins over after.
	again := a.get("/v1/events?decider=order&after=0", acceptSSE, "Last-Event-ID", offsetOf(stored[1]))
	assert.Equal(t, offsetOf(live), again.event().ID)
}

func TestFollowNDJSON(t *testing.T) {
	t.Parallel()
	a, _ := newLiveAPI(t, httpapi.Options{}, nil)
	a.register("order", "created", "shipped")
	stored := a.chainOK("order", "o-1", 3)

	st := a.get("/v1/events?after="+offsetOf(stored[0]), acceptNDJSON)
	assert.Equal(t, "application/x-ndjson", st.resp.Header.Get("Content-Type"))
	assert.Equal(t, "no-cache", st.resp.Header.Get("Cache-Control"))
	assert.Equal(t, "no", st.resp.Header.Get("X-Accel-Buffering"))
	plain := a.rawEvents("/v1/events?after=" + offsetOf(stored[0]))
	for _, want := range plain {
		raw, _ := st.eventLine()
		assert.Equal(t, string(want), string(raw))
	}
	shipped := with(event("order", "o-1", stored[2]["event_id"].(string)), "event", "shipped")
	a.appendOK(shipped)
	_, got := st.eventLine()
	assert.Equal(t, shipped["event_id"], got["event_id"])
	_, beat, ok := st.line()
	require.True(t, ok)
	_, err := time.Parse(time.RFC3339, fmt.Sprint(beat["heartbeat"]))
	assert.NoError(t, err, "a heartbeat line carries the time: %v", beat)

	// The event type filter, live.
	types := a.get("/v1/events?events=shipped", acceptNDJSON)
	_, got = types.eventLine()
	assert.Equal(t, shipped["event_id"], got["event_id"])
	a.chainOK("order", "o-2", 1)
	more := with(event("order", "o-2", a.rawLast("order", "o-2")), "event", "shipped")
	a.appendOK(more)
	_, got = types.eventLine()
	assert.Equal(t, more["event_id"], got["event_id"], "the created event in between is not sent")

	// Tags, live: every tag given must be carried.
	tagged := a.get("/v1/events?tag=customer:c-7&tag=order:o-3", acceptNDJSON)
	a.appendOK(with(event("order", "o-3", ""), "tags", []string{"order:o-3"}))
	both := a.appendOK(with(event("order", "o-4", ""), "tags", []string{"order:o-3", "customer:c-7", "x"}))
	_, got = tagged.eventLine()
	assert.Equal(t, both["event_id"], got["event_id"])
	assert.Equal(t, []any{"customer:c-7", "order:o-3", "x"}, got["tags"], "the frame carries the event's tags, sorted")
}

// rawLast returns the event_id of a stream's last event.
func (a *api) rawLast(decider, deciderID string) string {
	r := a.do("GET", "/v1/events/last?decider="+decider+"&decider_id="+deciderID, nil)
	require.Equal(a.t, 200, r.Status)
	return r.Body["event_id"].(string)
}

func TestFollowQuery(t *testing.T) {
	t.Parallel()
	a, _ := newLiveAPI(t, httpapi.Options{}, nil)
	a.register("library", "copy_lent", "copy_returned")
	lend := func(copyID string) map[string]any {
		return a.appendOK(with(event("library", uuid.NewString(), ""), "event", "copy_lent", "data", map[string]any{"copy_id": copyID, "n": 1}))
	}
	c1 := lend("c-1")
	lend("c-2")
	body := map[string]any{"follow": true, "query": map[string]any{"items": []any{
		map[string]any{"types": []string{"copy_lent"}, "matches": []any{map[string]any{"copy_id": "c-1"}}},
	}}}
	for _, accept := range []string{acceptNDJSON, acceptSSE} {
		st := a.mustOpen("POST", "/v1/events/query", accept, body)
		var id string
		if accept == acceptSSE {
			f := st.event()
			id = f.ID
			assert.Contains(t, f.Data, c1["event_id"])
		} else {
			_, got := st.eventLine()
			assert.Equal(t, c1["event_id"], got["event_id"])
			id = fmt.Sprint(int64(got["offset"].(float64)))
		}
		assert.Equal(t, offsetOf(c1), id)
	}
	st := a.mustOpen("POST", "/v1/events/query", acceptNDJSON, body)
	st.eventLine()
	lend("c-2")
	again := lend("c-1")
	_, got := st.eventLine()
	assert.Equal(t, again["event_id"], got["event_id"], "matched in Go as PostgreSQL would")
}

// Bad parameters get the 400s of the plain read, and those a stream adds.
func TestFollowBadRequests(t *testing.T) {
	t.Parallel()
	a, _ := newLiveAPI(t, httpapi.Options{}, nil)
	for name, tc := range map[string]struct {
		path, field string
		header      []string
	}{
		"bad decider":           {"/v1/events?decider=" + strings.Repeat("d", 256), "decider", nil},
		"stream needs decider":  {"/v1/events?decider_id=o-1", "decider_id", nil},
		"negative after":        {"/v1/events?after=-1", "after", nil},
		"empty events":          {"/v1/events?events=", "events", nil},
		"empty event type":      {"/v1/events?events=a,,b", "events", nil},
		"limit":                 {"/v1/events?limit=10", "limit", nil},
		"unknown parameter":     {"/v1/events?afterr=1", "afterr", nil},
		"bad Last-Event-ID":     {"/v1/events", "Last-Event-ID", []string{"Last-Event-ID", "abc"}},
		"negative Last-EventID": {"/v1/events", "Last-Event-ID", []string{"Last-Event-ID", "-4"}},
	} {
		t.Run(name, func(t *testing.T) {
			for _, accept := range []string{acceptSSE, acceptNDJSON} {
				_, r := a.open("GET", tc.path, accept, nil, tc.header...)
				requireProblem(t, r, 400, "invalid-request")
				assert.Contains(t, fieldNames(r), tc.field)
			}
			if tc.field != "limit" && tc.field != "Last-Event-ID" {
				r := a.do("GET", tc.path, nil)
				requireProblem(t, r, 400, "invalid-request")
				assert.Contains(t, fieldNames(r), tc.field, "the plain read refuses it too")
			}
		})
	}
	query := map[string]any{"items": []any{map[string]any{"types": []string{"a"}}}}
	for name, tc := range map[string]struct {
		accept string
		body   map[string]any
		field  string
	}{
		"follow without a stream":    {"application/json", map[string]any{"query": query, "follow": true}, "follow"},
		"a stream without follow":    {acceptNDJSON, map[string]any{"query": query}, "follow"},
		"follow with a limit":        {acceptSSE, map[string]any{"query": query, "follow": true, "limit": 5}, "limit"},
		"follow with a bad query":    {acceptSSE, map[string]any{"query": map[string]any{"items": []any{}}, "follow": true}, "query.items"},
		"follow with negative after": {acceptSSE, map[string]any{"query": query, "follow": true, "after": -1}, "after"},
	} {
		t.Run(name, func(t *testing.T) {
			_, r := a.open("POST", "/v1/events/query", tc.accept, tc.body)
			requireProblem(t, r, 400, "invalid-request")
			assert.Contains(t, fieldNames(r), tc.field)
		})
	}
	t.Run("a match PostgreSQL refuses", func(t *testing.T) {
		body := `{"follow": true, "query": {"items": [{"matches": [{"n": 1e999999}]}]}}`
		_, r := a.open("POST", "/v1/events/query", acceptNDJSON, json.RawMessage(body))
		requireProblem(t, r, 400, "invalid-request")
		requireProblem(t, a.do("POST", "/v1/events/query", strings.Replace(body, `"follow": true, `, "", 1)), 400, "invalid-request")
	})
	t.Run("access_token off a live follow", func(t *testing.T) {
		r := a.do("GET", "/v1/events?access_token=k", nil)
		requireProblem(t, r, 400, "invalid-request")
		assert.Equal(t, []string{"access_token"}, fieldNames(r))
		r = a.do("GET", "/v1/deciders?access_token=k", nil)
		requireProblem(t, r, 400, "invalid-request")
		body := map[string]any{"follow": true, "query": query}
		_, r = a.open("POST", "/v1/events/query?access_token=k", acceptSSE, body)
		requireProblem(t, r, 400, "invalid-request")
		assert.Equal(t, []string{"access_token"}, fieldNames(r), "a client that can POST can send headers")
	})
}

// Content negotiation: a stream only when its media type is named and
// preferred to JSON (at one quality, JSON: a generated client lists all).
func TestFollowNegotiation(t *testing.T) {
	t.Parallel()
	a, _ := newLiveAPI(t, httpapi.Options{}, nil)
	for accept, want := range map[string]string{
		"text/event-stream":                         "text/event-stream; charset=utf-8",
		"application/x-ndjson":                      "application/x-ndjson",
		"application/json, text/event-stream;q=0.5": "application/json",
		"text/event-stream, application/json;q=0.9": "text/event-stream; charset=utf-8",
		"*/*":                   "application/json",
		"":                      "application/json",
		"text/event-stream;q=0": "application/json",
		"application/x-ndjson;q=0.8, text/event-stream": "text/event-stream; charset=utf-8",
		"application/json, application/x-ndjson":        "application/json",
		"text/event-stream, application/json":           "application/json",
		"application/json;q=0.5, application/x-ndjson":  "application/x-ndjson",
	} {
		st, r := a.open("GET", "/v1/events", accept, nil)
		if st != nil {
			assert.Equal(t, want, st.resp.Header.Get("Content-Type"), accept)
			st.close()
		} else {
			assert.Equal(t, 200, r.Status)
			assert.Equal(t, want, r.Header.Get("Content-Type"), accept)
		}
	}
}

// Past MaxSubscribers a follower gets 503 with Retry-After; a place freed
// is taken again.
func TestFollowMaxSubscribers(t *testing.T) {
	t.Parallel()
	a, _ := newLiveAPI(t, httpapi.Options{MaxSubscribers: 2}, nil)
	one := a.get("/v1/events", acceptSSE)
	a.get("/v1/events", acceptNDJSON)
	_, r := a.open("GET", "/v1/events", acceptSSE, nil)
	requireProblem(t, r, 503, "too-many-subscribers")
	assert.Equal(t, "5", r.Header.Get("Retry-After"))
	assert.Equal(t, 200, a.do("GET", "/v1/events", nil).Status, "plain reads are not subscribers")
	one.close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, r := a.open("GET", "/v1/events", acceptSSE, nil)
		if st != nil {
			break
		}
		require.Equal(t, 503, r.Status)
		require.True(t, time.Now().Before(deadline), "the place was not freed")
		time.Sleep(20 * time.Millisecond)
	}
}

// Read-only keys may follow; EventSource sends the key as access_token,
// which fstore's access log never shows.
func TestFollowKeys(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	a, _ := newLiveAPI(t, httpapi.Options{APIKeys: []string{"writer-k3y", "ro:reader-s3cret"},
		Logger: zerolog.New(&logs).Level(zerolog.InfoLevel)}, nil)
	a.register("order", "created")
	stored := a.chainOK("order", "o-1", 1)
	a.key = "reader-s3cret"
	st := a.get("/v1/events", acceptNDJSON)
	_, got := st.eventLine()
	assert.Equal(t, stored[0]["event_id"], got["event_id"], "a read-only key follows")

	a.key = ""
	sse := a.get("/v1/events?decider=order&access_token=reader-s3cret", acceptSSE)
	assert.Equal(t, offsetOf(stored[0]), sse.event().ID)
	_, r := a.open("GET", "/v1/events?access_token=wrong", acceptSSE, nil)
	requireProblem(t, r, 401, "unauthorized")
	_, r = a.open("GET", "/v1/events", acceptSSE, nil)
	requireProblem(t, r, 401, "unauthorized")
	a.key = "writer-k3y"
	_, r = a.open("GET", "/v1/events?access_token=reader-s3cret", acceptSSE, nil)
	requireProblem(t, r, 400, "invalid-request")
	assert.Equal(t, []string{"access_token"}, fieldNames(r), "one key, not two")
	sse.close()
	// Pairs Go's parser drops (a bad escape, a semicolon) are redacted too.
	a.key = ""
	for _, q := range []string{"access_token=reader-s3cret%zz", "x=1;access_token=reader-s3cret", "ACCESS_TOKEN=reader-s3cret"} {
		_, r = a.open("GET", "/v1/events?"+q, acceptSSE, nil)
		assert.GreaterOrEqual(t, r.Status, 400, q)
	}

	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "decider=order&access_token=REDACTED") ||
		!strings.Contains(logs.String(), "x=1;access_token=REDACTED") {
		require.True(t, time.Now().Before(deadline), "no access log line for the follow: %s", logs.String())
		time.Sleep(20 * time.Millisecond)
	}
	assert.NotContains(t, logs.String(), "reader-s3cret")
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A live response outlives the server's ReadTimeout and WriteTimeout (60 s
// each in the API): it extends its own deadlines.
func TestFollowOutlivesServerTimeouts(t *testing.T) {
	t.Parallel()
	a, _ := newLiveAPI(t, httpapi.Options{}, func(s *http.Server) {
		s.ReadTimeout, s.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	})
	a.register("order", "created")
	st := a.get("/v1/events", acceptNDJSON)
	body := map[string]any{"follow": true, "query": map[string]any{"items": []any{map[string]any{}}}}
	qs := a.mustOpen("POST", "/v1/events/query", acceptSSE, body)
	for start := time.Now(); time.Since(start) < time.Second; {
		_, _, ok := st.line() // heartbeats
		require.True(t, ok, "the response was cut after %s", time.Since(start))
	}
	e := a.appendOK(event("order", "o-1", ""))
	_, got := st.eventLine()
	assert.Equal(t, e["event_id"], got["event_id"])
	assert.Equal(t, offsetOf(e), qs.event().ID)
}

// StopWaiting (SIGTERM) ends every follow at once with a final frame.
func TestStopWaitingEndsFollows(t *testing.T) {
	t.Parallel()
	a, srv := newLiveAPI(t, httpapi.Options{Heartbeat: time.Hour}, nil)
	a.register("order", "created")
	e := a.appendOK(event("order", "o-1", ""))
	sse := a.get("/v1/events", acceptSSE)
	nd := a.get("/v1/events", acceptNDJSON)
	sse.event()
	nd.eventLine()
	srv.StopWaiting()

	f := sse.event()
	assert.Equal(t, "error", f.Event)
	var final map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.Data), &final))
	assert.Equal(t, httpapi.ProblemTypePrefix+"shutting-down", final["type"])
	assert.Equal(t, e["offset"], final["after"], "where to follow again from")
	_, ok := sse.frame()
	assert.False(t, ok, "the response ends after the final frame")

	_, v := nd.eventLine()
	require.Contains(t, v, "error")
	assert.Equal(t, httpapi.ProblemTypePrefix+"shutting-down", v["error"].(map[string]any)["type"])
	_, _, ok = nd.line()
	assert.False(t, ok)
}
