//go:build fstore_notrace

package startup

import (
	"context"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
)

// Tracing, in a build without tracing (-tags fstore_notrace, for the
// benchmark that measures what tracing costs), sets up nothing.
func Tracing(context.Context, string, zerolog.Logger) (trace.TracerProvider, func(context.Context) error, error) {
	return nil, func(context.Context) error { return nil }, nil
}
