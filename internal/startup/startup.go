// Package startup is what fstore's binaries share when they start: reading
// configuration from the environment, the logger, waiting for the database.
package startup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"

	"github.com/fstore/fstore/internal/store"
)

// LoadEnv reads a config struct from the environment (caarlos0/env tags);
// its errors name the environment variables, not the Go fields.
func LoadEnv[T any]() (T, error) {
	cfg, err := env.ParseAs[T]()
	if err == nil {
		return cfg, nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return cfg, err
	}
	out := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			f, _ := reflect.TypeFor[T]().FieldByName(pe.Name)
			name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			e = fmt.Errorf("%s: %w", name, pe.Err)
		}
		out = append(out, e)
	}
	return cfg, errors.Join(out...)
}

// CheckLogging validates FSTORE_LOG_LEVEL and FSTORE_LOG_FORMAT values.
func CheckLogging(level, format string) error {
	var errs []error
	if _, err := zerolog.ParseLevel(level); err != nil || level == "" {
		errs = append(errs, fmt.Errorf("FSTORE_LOG_LEVEL %q: want trace, debug, info, warn or error", level))
	}
	if format != "json" && format != "console" {
		errs = append(errs, fmt.Errorf("FSTORE_LOG_FORMAT %q: want json or console", format))
	}
	return errors.Join(errs...)
}

// Logger returns the process's logger: JSON lines, or console for people.
func Logger(level, format, service string) zerolog.Logger {
	lvl, _ := zerolog.ParseLevel(level)
	var logger zerolog.Logger
	if format == "console" {
		logger = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly})
	} else {
		logger = zerolog.New(os.Stderr)
	}
	return logger.Level(lvl).With().Timestamp().Str("service", service).Logger()
}

// RedactURL hides a URL's password; a DSN that is not a URL is hidden whole.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "(set, not a URL: hidden)"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// IsLoopback reports whether host names this machine only.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// OpenStore opens the store, waiting up to timeout for the database to
// answer (it may still be starting, as under docker compose).
func OpenStore(ctx context.Context, dbURL string, timeout time.Duration, logger zerolog.Logger) (*store.Store, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		st, err := store.Open(ctx, dbURL)
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, store.ErrUnavailable) {
			return nil, err
		}
		logger.Warn().Err(err).Dur("retry_in", wait).Msg("database not reachable yet")
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("database did not answer within %s: %w", timeout, err)
		case <-time.After(wait):
		}
	}
}
