package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
)

func TestAppendEventStatuses(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{MaxBodyBytes: 64 << 10})
	a.register("order", "created")
	a.register("invoice", "created")

	first := event("order", "o-1", "")
	r := a.do("POST", "/v1/events", first)
	require.Equal(t, 201, r.Status, "%s", r.Raw)
	assert.Equal(t, "/v1/events/"+first["event_id"].(string), r.Header.Get("Location"))
	for _, k := range []string{"event", "event_id", "event_version", "decider", "decider_id", "data", "command_id",
		"previous_id", "final", "created_at", "offset"} {
		assert.Contains(t, r.Body, k)
	}
	assert.Nil(t, r.Body["previous_id"])
	stored := r.Body

	t.Run("retry of an identical event is 200 with the stored event", func(t *testing.T) {
		r := a.do("POST", "/v1/events", first)
		require.Equal(t, 200, r.Status)
		assert.Equal(t, stored, r.Body)
	})

	second := a.appendOK(event("order", "o-1", first["event_id"].(string)))

	conflicts := map[string]struct {
		body     map[string]any
		slug     string
		lastID   any
		hasLast  bool
		wantCode int
	}{
		"previous_id not last":                   {event("order", "o-1", first["event_id"].(string)), "concurrency-conflict", second["event_id"], true, 409},
		"null previous_id on a non-empty stream": {event("order", "o-1", ""), "concurrency-conflict", second["event_id"], true, 409},
		"previous_id on an empty stream":         {event("order", "o-2", first["event_id"].(string)), "concurrency-conflict", nil, true, 409},
		"same event_id, other content":           {with(first, "data", map[string]any{"n": 2}), "duplicate-event-id", nil, false, 409},
		"unregistered type":                      {with(event("order", "o-3", ""), "event", "shipped"), "event-type-not-registered", nil, false, 422},
		"unregistered version":                   {with(event("order", "o-3", ""), "event_version", 7), "event-type-not-registered", nil, false, 422},
	}
	for name, tc := range conflicts {
		t.Run(name, func(t *testing.T) {
			r := a.do("POST", "/v1/events", tc.body)
			requireProblem(t, r, tc.wantCode, tc.slug)
			if tc.hasLast {
				require.Contains(t, r.Body, "last_event_id", "the conflict carries the stream's last event")
				assert.Equal(t, tc.lastID, r.Body["last_event_id"])
			}
		})
	}

	t.Run("final stream", func(t *testing.T) {
		closing := with(event("order", "o-9", ""), "final", true)
		a.appendOK(closing)
		r := a.do("POST", "/v1/events", event("order", "o-9", closing["event_id"].(string)))
		requireProblem(t, r, 409, "stream-final")
	})

	valid := event("order", "o-5", "")
	bad := map[string]struct {
		body  any
		field string
	}{
		"empty body":                {"", ""},
		"whitespace body":           {"  \n", ""},
		"malformed JSON":            {`{"event": "created",`, ""},
		"array body":                {`[]`, ""},
		"trailing garbage":          {`{"event":"x"} trailing`, ""},
		"unknown field":             {with(valid, "previousId", nil), "previousId"},
		"event_id not a UUID":       {with(valid, "event_id", "nope"), "event_id"},
		"event_id wrong type":       {with(valid, "event_id", 12), "event_id"},
		"command_id missing":        {with(valid, "command_id", deleteField), "command_id"},
		"previous_id missing":       {with(valid, "previous_id", deleteField), "previous_id"},
		"previous_id not a UUID":    {with(valid, "previous_id", "123"), "previous_id"},
		"previous_id wrong type":    {with(valid, "previous_id", 5), "previous_id"},
		"decider missing":           {with(valid, "decider", deleteField), "decider"},
		"decider empty":             {with(valid, "decider", ""), "decider"},
		"decider control character": {with(valid, "decider", "a\tb"), "decider"},
		"decider_id too long":       {with(valid, "decider_id", strings.Repeat("é", 256)), "decider_id"},
		"decider_id with NUL":       {with(valid, "decider_id", "a\x00b"), "decider_id"},
		"decider_id control chars":  {with(valid, "decider_id", "a\u0001\nb"), "decider_id"},
		"decider_id C1 control":     {with(valid, "decider_id", "a\u0085b"), "decider_id"},
		"decider_id lone surrogate": {strings.Replace(mustJSON(valid), `"o-5"`, `"o-\ud800"`, 1), "decider_id"},
		"data lone surrogate":       {strings.Replace(mustJSON(valid), `{"n":1}`, `{"note":"x\udc00y"}`, 1), "data.note"},
		"data missing":              {with(valid, "data", deleteField), "data"},
		"data null":                 {with(valid, "data", nil), "data"},
		"data with NUL":             {with(valid, "data", map[string]any{"s": "a\x00b"}), "data"},
		"data too deep":             {with(valid, "data", deep(100)), "data"},
		"event_version negative":    {with(valid, "event_version", -1), "event_version"},
		"event_version overflow":    {strings.Replace(mustJSON(valid), `"event":`, `"event_version": 1e40, "event":`, 1), "event_version"},
		"final wrong type":          {with(valid, "final", "yes"), "final"},
		"SQL-looking decider":       {with(valid, "decider", "x'; DROP TABLE events; --"), ""},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			r := a.do("POST", "/v1/events", tc.body)
			if name == "SQL-looking decider" {
				// A valid name that is not registered: refused, and harmless.
				requireProblem(t, r, 422, "event-type-not-registered")
				return
			}
			requireProblem(t, r, 400, "invalid-request")
			if tc.field != "" {
				assert.Contains(t, fieldNames(r), tc.field, "%s", r.Raw)
			}
		})
	}

	t.Run("oversize body", func(t *testing.T) {
		big := with(valid, "data", map[string]any{"s": strings.Repeat("x", 70<<10)})
		requireProblem(t, a.do("POST", "/v1/events", big), 413, "body-too-large")
	})
	t.Run("not JSON content type", func(t *testing.T) {
		req, _ := http.NewRequest("POST", a.srv.URL+"/v1/events", strings.NewReader("event=x"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		requireProblem(t, send(t, req), 415, "unsupported-media-type")
	})

	// Nothing of the refused requests was stored.
	r = a.do("GET", "/v1/events?decider=order&decider_id=o-5", nil)
	require.Equal(t, 200, r.Status)
	assert.Empty(t, r.Body["events"])
}

func TestAppendBatch(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("order", "created")

	e1 := event("order", "a", "")
	e2 := event("order", "a", e1["event_id"].(string))
	e3 := event("order", "b", "")
	r := a.do("POST", "/v1/events/batch", map[string]any{"events": []any{e1, e2, e3}})
	require.Equal(t, 201, r.Status, "%s", r.Raw)
	evs := r.Body["events"].([]any)
	require.Len(t, evs, 3)
	for i, e := range []map[string]any{e1, e2, e3} {
		assert.Equal(t, e["event_id"], evs[i].(map[string]any)["event_id"], "input order")
	}

	r = a.do("POST", "/v1/events/batch", map[string]any{"events": []any{e1, e2, e3}})
	assert.Equal(t, 200, r.Status, "a retried batch")

	t.Run("a failing event stores nothing and names its index", func(t *testing.T) {
		ok1 := event("order", "c", "")
		ok2 := event("order", "d", "")
		conflicting := event("order", "a", "") // a is not empty
		r := a.do("POST", "/v1/events/batch", map[string]any{"events": []any{ok1, ok2, conflicting}})
		requireProblem(t, r, 409, "concurrency-conflict")
		assert.EqualValues(t, 2, r.Body["index"])
		assert.Equal(t, e2["event_id"], r.Body["last_event_id"])

		unregistered := with(event("order", "e", ""), "event", "nope")
		r = a.do("POST", "/v1/events/batch", map[string]any{"events": []any{ok1, unregistered}})
		requireProblem(t, r, 422, "event-type-not-registered")
		assert.EqualValues(t, 1, r.Body["index"])

		for _, id := range []string{"c", "d", "e"} {
			r := a.do("GET", "/v1/events?decider=order&decider_id="+id, nil)
			assert.Empty(t, r.Body["events"], "stream %s", id)
		}
	})

	invalid := map[string]any{
		"no events":          map[string]any{"events": []any{}},
		"events missing":     map[string]any{},
		"events null":        map[string]any{"events": nil},
		"too many":           map[string]any{"events": make([]any, 1001)},
		"repeated event_id":  map[string]any{"events": []any{e3, with(event("order", "z", ""), "event_id", e3["event_id"])}},
		"an invalid event":   map[string]any{"events": []any{event("order", "y", ""), with(e3, "event_id", "bad")}},
		"an event not a map": map[string]any{"events": []any{5}},
	}
	for name, body := range invalid {
		t.Run(name, func(t *testing.T) {
			requireProblem(t, a.do("POST", "/v1/events/batch", body), 400, "invalid-request")
		})
	}
	r = a.do("POST", "/v1/events/batch", map[string]any{"events": []any{event("order", "y", ""), with(e3, "event_id", "bad")}})
	assert.EqualValues(t, 1, r.Body["index"])
	assert.Contains(t, fieldNames(r), "events[1].event_id")
}

func TestReadEvents(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("order", "created")
	a.register("invoice", "created")
	var orderIDs []any
	prev := ""
	for range 5 {
		b := a.appendOK(event("order", "o-1", prev))
		prev = b["event_id"].(string)
		orderIDs = append(orderIDs, b["event_id"])
		a.appendOK(event("invoice", fmt.Sprint("i-", len(orderIDs)), ""))
	}

	r := a.do("GET", "/v1/events?decider=order&decider_id=o-1", nil)
	require.Equal(t, 200, r.Status)
	assert.Equal(t, orderIDs, ids(r))
	assert.Nil(t, r.Body["next_after"])

	// Paging a stream.
	r = a.do("GET", "/v1/events?decider=order&decider_id=o-1&limit=2", nil)
	assert.Equal(t, orderIDs[:2], ids(r))
	next := r.Body["next_after"]
	require.NotNil(t, next)
	r = a.do("GET", fmt.Sprintf("/v1/events?decider=order&decider_id=o-1&limit=2&after=%.0f", next), nil)
	assert.Equal(t, orderIDs[2:4], ids(r))

	// A decider's streams, and the whole log, paged to the end.
	assert.Len(t, readAll(t, a, "decider=invoice&limit=2"), 5)
	assert.Len(t, readAll(t, a, "limit=3"), 10)

	r = a.do("GET", "/v1/events/last?decider=order&decider_id=o-1", nil)
	require.Equal(t, 200, r.Status)
	assert.Equal(t, orderIDs[4], r.Body["event_id"])
	requireProblem(t, a.do("GET", "/v1/events/last?decider=invoice&decider_id=o-1", nil), 404, "not-found")

	r = a.do("GET", "/v1/events/"+orderIDs[0].(string), nil)
	require.Equal(t, 200, r.Status)
	assert.Equal(t, orderIDs[0], r.Body["event_id"])
	requireProblem(t, a.do("GET", "/v1/events/"+uuid.NewString(), nil), 404, "not-found")

	for _, q := range []string{
		"/v1/events?limit=0", "/v1/events?limit=10001", "/v1/events?limit=x", "/v1/events?after=-1",
		"/v1/events?after=99999999999999999999", "/v1/events?decider_id=o-1", "/v1/events?decider=",
		"/v1/events?decider=a%01b", "/v1/events/last?decider=order", "/v1/events/last", "/v1/events/not-a-uuid",
		"/v1/events/last?decider=order&decider_id=a%00b",
	} {
		requireProblem(t, a.do("GET", q, nil), 400, "invalid-request")
	}
}

func ids(r response) []any {
	var out []any
	for _, e := range r.Body["events"].([]any) {
		out = append(out, e.(map[string]any)["event_id"])
	}
	return out
}

func readAll(t *testing.T, a *api, query string) []any {
	t.Helper()
	var out []any
	after := 0.0
	for {
		r := a.do("GET", fmt.Sprintf("/v1/events?%s&after=%.0f", query, after), nil)
		require.Equal(t, 200, r.Status, "%s", r.Raw)
		out = append(out, ids(r)...)
		next, ok := r.Body["next_after"].(float64)
		if !ok {
			return out
		}
		after = next
	}
}

// 20 clients append the first event of one new stream at once, over HTTP:
// exactly one gets 201, the others 409 naming the winner.
func TestConcurrentFirstAppendsOverHTTP(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("order", "created")
	const n = 20
	statuses := make([]int, n)
	bodies := make([]map[string]any, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		body := event("order", "contended", "")
		wg.Go(func() {
			<-start
			r := a.do("POST", "/v1/events", body)
			statuses[i], bodies[i] = r.Status, r.Body
		})
	}
	close(start)
	wg.Wait()
	var winner any
	created := 0
	for i, s := range statuses {
		if s == 201 {
			created++
			winner = bodies[i]["event_id"]
		} else {
			assert.Equal(t, 409, s)
		}
	}
	require.Equal(t, 1, created, "exactly one 201")
	for i, s := range statuses {
		if s == 409 {
			assert.Equal(t, winner, bodies[i]["last_event_id"])
		}
	}
}

func deep(n int) any {
	var v any = "leaf"
	for range n {
		v = []any{v}
	}
	return v
}
