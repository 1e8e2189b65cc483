// Package startup is what fstore's binaries share when they start: reading
// configuration from the environment, the logger, waiting for the database.
package startup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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

// Logger returns the process's logger: JSON lines, or console for people
// (coloured on a terminal only). fstore logs durations as Go duration
// strings ("830ms", "20s"), so that a reader never guesses the unit; the
// access log's duration_ms is a number, for machines.
func Logger(level, format, service string) zerolog.Logger {
	lvl, _ := zerolog.ParseLevel(level)
	var logger zerolog.Logger
	if format == "console" {
		// Colours only on a terminal: in a file or a pipe they are noise.
		logger = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly, NoColor: !isTerminal(os.Stderr)})
	} else {
		logger = zerolog.New(os.Stderr)
	}
	return logger.Level(lvl).With().Timestamp().Str("service", service).Logger()
}

// isTerminal reports whether f is a terminal (a character device), not a
// file or a pipe.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Migrate applies the pending migrations and says what it did: which
// versions it applied, or that the schema was already current (another
// process, or an earlier start, migrated it).
func Migrate(ctx context.Context, st *store.Store, migrations fs.FS, logger zerolog.Logger) (int, error) {
	version, err := store.LatestVersion(migrations)
	if err != nil {
		return 0, err
	}
	applied, err := st.Migrate(ctx, migrations)
	if err != nil {
		return 0, err
	}
	if len(applied) > 0 {
		logger.Info().Ints("applied", applied).Int("schema_version", version).Msg("migrations applied")
	} else {
		logger.Info().Int("schema_version", version).
			Msg("schema already current: no migration to apply (an earlier start or another process applied them)")
	}
	return version, nil
}

// RedactURL hides a URL's password; a DSN that is not a URL is hidden whole.
func RedactURL(s string) string {
	if s == "" {
		return ""
	}
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
// answer (it may still be starting, as under docker compose). Projection
// reads go to the hot standby at readURL when it is not empty; it need not
// answer yet.
func OpenStore(ctx context.Context, dbURL, readURL string, timeout time.Duration, logger zerolog.Logger) (*store.Store, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		st, err := store.Open(ctx, dbURL, store.WithReadReplica(readURL))
		if err == nil {
			// cache_describe says a connection pooler answers for PostgreSQL.
			logger.Info().Str("query_exec_mode", st.QueryExecMode()).Bool("read_standby", readURL != "").
				Msg("connected to the database")
			return st, nil
		}
		if !errors.Is(err, store.ErrUnavailable) {
			return nil, err
		}
		logger.Warn().Err(err).Str("retry_in", wait.String()).Msg("database not reachable yet")
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("database did not answer within %s: %w", timeout, err)
		case <-time.After(wait):
		}
	}
}
