//go:build !fstore_notrace

package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/fstore/fstore/internal/store"
)

// Tracing (OpenTelemetry): with a tracer provider, a server span per request
// named by its route, continuing the caller's trace, and a span per store
// call under it. Without one, nothing but the trace context kept in the
// events' metadata (traceContext).

const tracerName = "github.com/fstore/fstore/internal/http"

// traceRequests wraps h in otelhttp's server spans when tp is not nil,
// continuing the caller's W3C trace context (and baggage).
func traceRequests(h http.Handler, tp trace.TracerProvider) http.Handler {
	if tp == nil {
		return h
	}
	return otelhttp.NewHandler(h, "fstore-api", otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator(w3c, propagation.Baggage{})),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }))
}

// nameSpans names the request's span by its route pattern, once chi has
// routed it ("POST /v1/events", not the path, which holds names and ids).
func nameSpans(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		span := trace.SpanFromContext(r.Context())
		if !span.IsRecording() {
			return
		}
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			span.SetName(r.Method + " " + rc.RoutePattern())
			span.SetAttributes(attribute.String("http.route", rc.RoutePattern()))
		}
	})
}

// w3c reads and writes the trace context kept in events' metadata.
var w3c = propagation.TraceContext{}

// traceContext returns the trace context an event appended by r keeps: the
// request's span when it is traced, else the caller's traceparent and
// tracestate headers as the W3C rules read them; "" when there is none.
func traceContext(r *http.Request) (traceparent, tracestate string) {
	ctx := r.Context()
	if !trace.SpanContextFromContext(ctx).IsValid() {
		if r.Header.Get("traceparent") == "" {
			return "", ""
		}
		ctx = w3c.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	c := propagation.MapCarrier{}
	w3c.Inject(ctx, c)
	return c["traceparent"], c["tracestate"]
}

// tracedStore is the store with a span per call; the methods it does not
// trace pass through.
type tracedStore struct {
	Store
	tracer trace.Tracer
}

func traceStore(st Store, tp trace.TracerProvider) Store {
	if tp == nil {
		return st
	}
	return tracedStore{Store: st, tracer: tp.Tracer(tracerName)}
}

func (t tracedStore) span(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
}

// end ends span, marking it failed when err is one the API answers with a
// 5xx; a refusal the client caused (a conflict, a failed condition) is an
// outcome, recorded as an event.
func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		if status := statusOf(err); status >= 500 {
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}

func (t tracedStore) AppendEvents(ctx context.Context, evs []store.NewEvent) (store.AppendResult, error) {
	ctx, span := t.span(ctx, "store.AppendEvents", attribute.Int("fstore.events", len(evs)))
	res, err := t.Store.AppendEvents(ctx, evs)
	end(span, err)
	return res, err
}

func (t tracedStore) AppendEventsIf(ctx context.Context, evs []store.NewEvent, cond store.Condition) (store.AppendResult, error) {
	ctx, span := t.span(ctx, "store.AppendEventsIf", attribute.Int("fstore.events", len(evs)),
		attribute.Int64("fstore.condition.after", cond.After))
	res, err := t.Store.AppendEventsIf(ctx, evs, cond)
	end(span, err)
	return res, err
}

func (t tracedStore) ReadEvents(ctx context.Context, q store.ReadQuery) ([]store.Event, error) {
	ctx, span := t.span(ctx, "store.ReadEvents", attribute.String("fstore.decider", q.Decider))
	evs, err := t.Store.ReadEvents(ctx, q)
	end(span, err)
	return evs, err
}

func (t tracedStore) QueryEvents(ctx context.Context, q store.Query, after int64, limit int) (store.QueryResult, error) {
	ctx, span := t.span(ctx, "store.QueryEvents", attribute.Int("fstore.query.items", len(q.Items)))
	res, err := t.Store.QueryEvents(ctx, q, after, limit)
	end(span, err)
	return res, err
}

func (t tracedStore) LastEvent(ctx context.Context, decider, deciderID string) (store.Event, error) {
	ctx, span := t.span(ctx, "store.LastEvent", attribute.String("fstore.decider", decider))
	e, err := t.Store.LastEvent(ctx, decider, deciderID)
	end(span, err)
	return e, err
}

func (t tracedStore) GetEvent(ctx context.Context, id uuid.UUID) (store.Event, error) {
	ctx, span := t.span(ctx, "store.GetEvent")
	e, err := t.Store.GetEvent(ctx, id)
	end(span, err)
	return e, err
}

func (t tracedStore) LeaseEvents(ctx context.Context, view string, r store.LeaseRequest) ([]store.LeasedEvent, error) {
	ctx, span := t.span(ctx, "store.LeaseEvents", attribute.String("fstore.view", view))
	evs, err := t.Store.LeaseEvents(ctx, view, r)
	end(span, err)
	return evs, err
}

func (t tracedStore) Ack(ctx context.Context, view, decider, deciderID string, offset int64, leaseID uuid.UUID) (store.Partition, error) {
	ctx, span := t.span(ctx, "store.Ack", attribute.String("fstore.view", view))
	p, err := t.Store.Ack(ctx, view, decider, deciderID, offset, leaseID)
	end(span, err)
	return p, err
}

func (t tracedStore) Nack(ctx context.Context, view, decider, deciderID string, leaseID uuid.UUID, retryAfter time.Duration,
	reason string) (store.Partition, error) {
	ctx, span := t.span(ctx, "store.Nack", attribute.String("fstore.view", view))
	p, err := t.Store.Nack(ctx, view, decider, deciderID, leaseID, retryAfter, reason)
	end(span, err)
	return p, err
}

func (t tracedStore) RegisterView(ctx context.Context, r store.ViewRegistration) (store.View, bool, error) {
	ctx, span := t.span(ctx, "store.RegisterView", attribute.String("fstore.view", r.View))
	v, created, err := t.Store.RegisterView(ctx, r)
	end(span, err)
	return v, created, err
}

func (t tracedStore) GetView(ctx context.Context, name string) (store.View, error) {
	ctx, span := t.span(ctx, "store.GetView", attribute.String("fstore.view", name))
	v, err := t.Store.GetView(ctx, name)
	end(span, err)
	return v, err
}

func (t tracedStore) RegisterEventType(ctx context.Context, et store.EventType) (store.EventType, bool, error) {
	ctx, span := t.span(ctx, "store.RegisterEventType", attribute.String("fstore.decider", et.Decider))
	got, created, err := t.Store.RegisterEventType(ctx, et)
	end(span, err)
	return got, created, err
}
