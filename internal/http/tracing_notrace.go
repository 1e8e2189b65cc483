//go:build fstore_notrace

package httpapi

import (
	"net/http"

	"go.opentelemetry.io/otel/trace"
)

// A build without tracing (-tags fstore_notrace, for the benchmark that
// measures what tracing costs): no spans, no trace context in metadata.

func traceRequests(h http.Handler, _ trace.TracerProvider) http.Handler { return h }

func nameSpans(next http.Handler) http.Handler { return next }

func traceContext(*http.Request) (traceparent, tracestate string) { return "", "" }

func traceStore(st Store, _ trace.TracerProvider) Store { return st }
