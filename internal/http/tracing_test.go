//go:build !fstore_notrace

package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	httpapi "github.com/fstore/fstore/internal/http"
	"github.com/fstore/fstore/internal/store/storetest"
)

const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
	traceparent = "00-" + callerTrace + "-" + callerSpan + "-01"
)

// post sends body with the caller's trace context headers.
func (a *api) post(path string, body any, headers ...string) response {
	a.t.Helper()
	req, err := http.NewRequest("POST", a.srv.URL+path, strings.NewReader(mustJSON(body)))
	require.NoError(a.t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return send(a.t, req)
}

func tracedAPI(t *testing.T) (*api, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	st := storetest.NewStore(t)
	srv := httptest.NewServer(httpapi.NewServer(st, httpapi.Options{TracerProvider: tp,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}).Handler())
	t.Cleanup(srv.Close)
	return &api{t: t, srv: srv}, exp
}

func spanNamed(t *testing.T, exp *tracetest.InMemoryExporter, name string) tracetest.SpanStub {
	t.Helper()
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no span %q among %d", name, len(exp.GetSpans()))
	return tracetest.SpanStub{}
}

// A traced request: a server span named by its route under the caller's
// span, a span for the store call under it, and the event keeps the
// request span's trace context in its metadata, for its pushes to continue.
func TestRequestsAreTraced(t *testing.T) {
	t.Parallel()
	a, exp := tracedAPI(t)
	a.register("order", "created")
	exp.Reset()

	body := event("order", "o-1", "")
	r := a.post("/v1/events", body, "traceparent", traceparent, "tracestate", "vendor=1")
	require.Equal(t, 201, r.Status, "%s", r.Raw)
	server := spanNamed(t, exp, "POST /v1/events")
	assert.Equal(t, trace.SpanKindServer, server.SpanKind)
	assert.Equal(t, callerTrace, server.SpanContext.TraceID().String())
	assert.Equal(t, callerSpan, server.Parent.SpanID().String(), "the caller's span is the parent")
	storeSpan := spanNamed(t, exp, "store.AppendEvents")
	assert.Equal(t, server.SpanContext.SpanID(), storeSpan.Parent.SpanID(), "the store call is under the request")
	metadata := r.Body["metadata"].(map[string]any)
	assert.Equal(t, "00-"+callerTrace+"-"+server.SpanContext.SpanID().String()+"-01", metadata["traceparent"])
	assert.Equal(t, "vendor=1", metadata["tracestate"])

	t.Run("a refused condition is an outcome, not an error", func(t *testing.T) {
		exp.Reset()
		batch := map[string]any{"events": []any{event("order", "o-2", "")},
			"condition": map[string]any{"query": map[string]any{"items": []any{map[string]any{"types": []string{"created"}}}}, "after": 0}}
		requireProblem(t, a.post("/v1/events/batch", batch), 409, "condition-failed")
		assert.Equal(t, codes.Unset, spanNamed(t, exp, "store.AppendEventsIf").Status.Code)
		assert.NotEmpty(t, spanNamed(t, exp, "store.AppendEventsIf").Events, "the refusal is recorded")
	})
	t.Run("reads are named by route, not path", func(t *testing.T) {
		exp.Reset()
		r := a.do("GET", "/v1/events/"+body["event_id"].(string), nil)
		require.Equal(t, 200, r.Status)
		spanNamed(t, exp, "GET /v1/events/{event_id}")
		spanNamed(t, exp, "store.GetEvent")
	})
}

// Untraced, the API still keeps the caller's trace context in the event
// (as the W3C rules read it); the client's own keys win; without one, or
// with a malformed one, the metadata is as sent.
func TestTraceContextKeptInMetadata(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("order", "created")
	meta := func(r response) map[string]any {
		t.Helper()
		require.Contains(t, []int{200, 201}, r.Status, "%s", r.Raw)
		return r.Body["metadata"].(map[string]any)
	}
	got := meta(a.post("/v1/events", event("order", "a", ""), "traceparent", traceparent, "tracestate", "vendor=1"))
	assert.Equal(t, map[string]any{"traceparent": traceparent, "tracestate": "vendor=1"}, got)

	own := with(event("order", "b", ""), "metadata", map[string]any{"traceparent": "mine", "user": "ada"})
	got = meta(a.post("/v1/events", own, "traceparent", traceparent, "tracestate", "vendor=1"))
	assert.Equal(t, map[string]any{"traceparent": "mine", "tracestate": "vendor=1", "user": "ada"}, got)

	batch := map[string]any{"events": []any{event("order", "c", ""), with(event("order", "d", ""), "metadata", map[string]any{"n": 1})}}
	r := a.post("/v1/events/batch", batch, "traceparent", traceparent)
	require.Equal(t, 201, r.Status, "%s", r.Raw)
	for _, e := range r.Body["events"].([]any) {
		assert.Equal(t, traceparent, e.(map[string]any)["metadata"].(map[string]any)["traceparent"])
	}

	assert.Equal(t, map[string]any{}, meta(a.post("/v1/events", event("order", "e", ""))))
	assert.Equal(t, map[string]any{}, meta(a.post("/v1/events", event("order", "f", ""), "traceparent", "00-nonsense")))

	// A retry carries a trace context of its own: still the same event.
	retry := event("order", "g", "")
	first := meta(a.post("/v1/events", retry, "traceparent", traceparent))
	r = a.post("/v1/events", retry, "traceparent", "00-"+strings.Repeat("1", 32)+"-"+strings.Repeat("2", 16)+"-01")
	require.Equal(t, 200, r.Status, "%s", r.Raw)
	assert.Equal(t, first, meta(r), "the stored trace context")
}
