//go:build !fstore_notrace

package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/fstore/fstore/internal/store"
)

// A push continues the trace of the request that appended its event: the
// event keeps that request's W3C trace context in its metadata (the API puts
// it there). The push is a client span under it, and its own trace context
// goes to the receiver as traceparent and tracestate headers, so the
// receiver's spans join the append's trace. Without a tracer provider the
// span records nothing and the headers carry the event's trace context as
// stored.

const tracerName = "github.com/fstore/fstore/internal/dispatch"

var w3c = propagation.TraceContext{}

func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(tracerName)
}

// startPush starts the span of pushing e to v.
func (d *Dispatcher) startPush(ctx context.Context, v store.PushView, e store.Event) (context.Context, trace.Span) {
	if bytes.Contains(e.Metadata, []byte(`"traceparent"`)) {
		var tc map[string]json.RawMessage
		if json.Unmarshal(e.Metadata, &tc) == nil {
			c := propagation.MapCarrier{}
			for _, k := range []string{"traceparent", "tracestate"} {
				var s string
				if json.Unmarshal(tc[k], &s) == nil {
					c[k] = s
				}
			}
			ctx = w3c.Extract(ctx, c)
		}
	}
	return d.tracer.Start(ctx, "push "+v.View, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("fstore.view", v.View), attribute.String("fstore.event_id", e.EventID.String()),
			attribute.Int64("fstore.offset", e.Offset)))
}

// traceHeaders sets the trace context of ctx (the push's span) on a push.
func traceHeaders(ctx context.Context, h http.Header) { w3c.Inject(ctx, propagation.HeaderCarrier(h)) }

// endPush ends a push's span with its answer.
func endPush(span trace.Span, status int, err error) {
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	switch {
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, errorClass(err))
	case status < 200 || status >= 300:
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}
