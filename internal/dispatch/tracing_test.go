//go:build !fstore_notrace

package dispatch_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

const (
	appendTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	appendSpan   = "00f067aa0ba902b7"
	appendParent = "00-" + appendTrace + "-" + appendSpan + "-01"
)

// headerReceiver answers 204 and records each push's trace headers.
type headerReceiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	headers map[string]http.Header // event_id → headers
}

func newHeaderReceiver(t *testing.T) *headerReceiver {
	r := &headerReceiver{headers: map[string]http.Header{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.headers[req.Header.Get("webhook-id")] = req.Header.Clone()
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *headerReceiver) got(id uuid.UUID) (http.Header, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.headers[id.String()]
	return h, ok
}

// tracedEvents stores a view pushing to rcv and two events: one that kept
// an append's trace context, one without.
func tracedEvents(t *testing.T, rcv *headerReceiver) (*store.Store, uuid.UUID, uuid.UUID) {
	t.Helper()
	st := storetest.NewStore(t)
	_, _, err := st.RegisterEventType(ctx, store.EventType{Decider: "order", Event: "created", EventVersion: 1})
	require.NoError(t, err)
	start := time.Now().Add(-time.Hour)
	_, _, err = st.RegisterView(ctx, store.ViewRegistration{View: "hooks", StartAt: &start, LockTimeoutS: 60, EdgeFunctionURL: &rcv.srv.URL})
	require.NoError(t, err)
	var ids []uuid.UUID
	for i, metadata := range []string{fmt.Sprintf(`{"traceparent":%q,"tracestate":"vendor=1","user":"ada"}`, appendParent), `{}`} {
		e := store.NewEvent{Event: "created", EventID: uuid.New(), EventVersion: 1, Decider: "order",
			DeciderID: fmt.Sprint("o-", i), Data: json.RawMessage(`{}`), CommandID: uuid.New(), Metadata: json.RawMessage(metadata)}
		_, err := st.AppendEvents(ctx, []store.NewEvent{e})
		require.NoError(t, err)
		ids = append(ids, e.EventID)
	}
	return st, ids[0], ids[1]
}

// Untraced, a push carries its event's trace context as the append kept it.
func TestPushCarriesTheEventsTraceContext(t *testing.T) {
	t.Parallel()
	rcv := newHeaderReceiver(t)
	st, traced, plain := tracedEvents(t, rcv)
	run(t, st, testConfig())
	waitFor(t, 30*time.Second, "both pushed", func() bool {
		_, a := rcv.got(traced)
		_, b := rcv.got(plain)
		return a && b
	})
	h, _ := rcv.got(traced)
	assert.Equal(t, appendParent, h.Get("traceparent"))
	assert.Equal(t, "vendor=1", h.Get("tracestate"))
	h, _ = rcv.got(plain)
	assert.Empty(t, h.Get("traceparent"), "no trace context, no header")
}

// Traced, every push is a client span under its event's append, and the
// receiver is told the push's span: its trace continues the append's.
func TestPushesAreTracedUnderTheAppend(t *testing.T) {
	t.Parallel()
	rcv := newHeaderReceiver(t)
	st, traced, _ := tracedEvents(t, rcv)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(ctx) })
	cfg := testConfig()
	cfg.TracerProvider = tp
	run(t, st, cfg)
	waitFor(t, 30*time.Second, "the traced event pushed", func() bool { _, ok := rcv.got(traced); return ok })
	var push tracetest.SpanStub
	waitFor(t, 30*time.Second, "its span ended", func() bool {
		for _, s := range exp.GetSpans() {
			if s.Attributes != nil && s.SpanContext.TraceID().String() == appendTrace {
				push = s
				return true
			}
		}
		return false
	})
	assert.Equal(t, "push hooks", push.Name)
	assert.Equal(t, trace.SpanKindClient, push.SpanKind)
	assert.Equal(t, appendSpan, push.Parent.SpanID().String(), "a child of the append's span")
	h, _ := rcv.got(traced)
	assert.Equal(t, "00-"+appendTrace+"-"+push.SpanContext.SpanID().String()+"-01", h.Get("traceparent"))
	assert.Equal(t, "vendor=1", h.Get("tracestate"))
}
