// Command fstore-api serves fstore's REST/JSON API over PostgreSQL. It applies
// pending migrations at start-up (under an advisory lock, so several
// instances may start at once) and shuts down gracefully on SIGINT/SIGTERM.
// Configuration comes from the environment: see config.go and README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	httpapi "github.com/fstore/fstore/internal/http"
	"github.com/fstore/fstore/internal/startup"
	fstoresql "github.com/fstore/fstore/sql"
	"github.com/fstore/fstore/web"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help") {
		fmt.Println("fstore-api: fstore's REST/JSON API. Configured by the environment: DATABASE_URL (required), " +
			"FSTORE_READ_DATABASE_URL, FSTORE_ADDR, FSTORE_API_KEYS, FSTORE_INSECURE, FSTORE_MAX_BODY_BYTES, FSTORE_MAX_SUBSCRIBERS, " +
			"FSTORE_SHUTDOWN_TIMEOUT, FSTORE_CONNECT_TIMEOUT, FSTORE_LOG_LEVEL, FSTORE_LOG_FORMAT, FSTORE_PPROF_ADDR, " +
			"FSTORE_ALLOW_PRIVATE_URLS, GOGC, GOMEMLIMIT and the standard OTEL_* variables. See README.md.")
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fstore-api:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := loadConfig()
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if os.Getenv("GOGC") == "" {
		// The live heap is a few MiB; collecting at 5× it instead of 2×
		// saves CPU on every request and keeps memory small.
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// A thousand live followers make the live heap some 20 MiB, and 5×
		// that plus their stacks is 150 MB: past this soft limit the GC
		// collects sooner instead.
		debug.SetMemoryLimit(100 << 20)
	}
	logger := startup.Logger(cfg.LogLevel, cfg.LogFormat, "fstore-api")
	logger.Info().Object("config", cfg).Msg("starting fstore API")

	st, err := startup.OpenStore(ctx, cfg.DatabaseURL, cfg.ReadDatabaseURL, cfg.ConnectTimeout, logger)
	if err != nil {
		return err
	}
	defer st.Close()
	version, err := startup.Migrate(ctx, st, fstoresql.Migrations, logger)
	if err != nil {
		return err
	}

	tp, flushSpans, err := startup.Tracing(ctx, "fstore-api", logger)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer flush(flushSpans, logger)
	logger.Info().Bool("exporting_spans", tp != nil).Msg("tracing set up")

	api := httpapi.NewServer(st, httpapi.Options{
		Logger: logger, APIKeys: cfg.APIKeys, MaxBodyBytes: cfg.MaxBodyBytes, SchemaVersion: version,
		AllowPrivateURLs: cfg.AllowPrivateURLs,
		TracerProvider:   tp,
		MaxSubscribers:   cfg.MaxSubscribers,
		Console:          web.Console,
	})
	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second, // live follows extend their own (internal/http/live.go)
		IdleTimeout:       120 * time.Second,
	}
	if cfg.PprofAddr != "" {
		go servePprof(cfg.PprofAddr, logger)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	base := "http://" + ln.Addr().String()
	logger.Info().Str("api", base+"/v1").Str("console", base+"/console/").Str("docs", base+"/docs/").Str("openapi", base+"/openapi.json").
		Msg("fstore API listening")

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	logger.Info().Str("timeout", cfg.ShutdownTimeout.String()).Msg("shutting down: finishing in-flight requests")
	api.StopWaiting()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info().Msg("stopped")
	return nil
}

// flush exports the spans still queued, for up to 5 s.
func flush(f func(context.Context) error, logger zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f(ctx); err != nil {
		logger.Warn().Err(err).Msg("flushing spans")
	}
}

// servePprof serves net/http/pprof's handlers on their own loopback listener.
func servePprof(addr string, logger zerolog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	logger.Info().Str("addr", addr).Msg("pprof listening")
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		logger.Error().Err(err).Msg("pprof stopped")
	}
}
