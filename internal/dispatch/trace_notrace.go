//go:build fstore_notrace

package dispatch

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/fstore/fstore/internal/store"
)

// A build without tracing (-tags fstore_notrace): pushes carry no trace
// context.

func tracerOf(trace.TracerProvider) trace.Tracer { return noop.NewTracerProvider().Tracer("") }

func (d *Dispatcher) startPush(ctx context.Context, _ store.PushView, _ store.Event) (context.Context, trace.Span) {
	return ctx, trace.SpanFromContext(ctx)
}

func traceHeaders(context.Context, http.Header) {}

func endPush(trace.Span, int, error) {}
