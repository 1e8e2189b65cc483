// Command fstore-dispatcher pushes the events of every view that has an
// edge_function_url to that URL, signed the Standard Webhooks way, in order
// per partition. Several may run against one database. It serves /metrics
// and /healthz on FSTORE_METRICS_ADDR and stops gracefully on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fstore/fstore/internal/dispatch"
	"github.com/fstore/fstore/internal/startup"
	fstoresql "github.com/fstore/fstore/sql"
)

// version is this build's, as the User-Agent and the heartbeat show it.
const version = "0.1"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help") {
		fmt.Println("fstore-dispatcher: pushes view events to their edge_function_url. Configured by the environment: " +
			"DATABASE_URL (required), FSTORE_READ_DATABASE_URL, FSTORE_METRICS_ADDR, FSTORE_ALLOW_PRIVATE_URLS, FSTORE_DISPATCH_MAX_IN_FLIGHT, " +
			"FSTORE_DISPATCH_TIMEOUT, FSTORE_DISPATCH_MAX_ATTEMPTS, FSTORE_DISPATCH_MAX_AGE, FSTORE_SHUTDOWN_TIMEOUT, " +
			"FSTORE_CONNECT_TIMEOUT, FSTORE_LOG_LEVEL, FSTORE_LOG_FORMAT. See README.md.")
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fstore-dispatcher:", err)
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
	logger := startup.Logger(cfg.LogLevel, cfg.LogFormat, "fstore-dispatcher")
	logger.Info().Object("config", cfg).Msg("starting fstore dispatcher")

	st, err := startup.OpenStore(ctx, cfg.DatabaseURL, cfg.ReadDatabaseURL, cfg.ConnectTimeout, logger)
	if err != nil {
		return err
	}
	defer st.Close()
	// Idempotent and under the API's advisory lock: whichever starts first migrates.
	if _, err := startup.Migrate(ctx, st, fstoresql.Migrations, logger); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := dispatch.NewMetrics(reg)
	dispatch.RegisterViewMetrics(reg, st)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	srv := &http.Server{Addr: cfg.MetricsAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error().Err(err).Msg("metrics server stopped")
			stop()
		}
	}()
	logger.Info().Str("metrics", "http://"+cfg.MetricsAddr+"/metrics").Msg("fstore dispatcher running")

	tp, flushSpans, err := startup.Tracing(ctx, "fstore-dispatcher", logger)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() {
		flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := flushSpans(flushCtx); err != nil {
			logger.Warn().Err(err).Msg("flushing spans")
		}
	}()
	logger.Info().Bool("exporting_spans", tp != nil).Msg("tracing set up")

	// The API lists dispatchers from their heartbeats (the console reaches
	// nothing else); it stops with ctx and removes its row.
	hbCtx, stopBeating := context.WithCancel(ctx)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		dispatch.RunHeartbeat(hbCtx, st, dispatch.NewHeartbeat(cfg.MetricsAddr, version, 0), logger)
	}()
	defer func() { stopBeating(); <-hbDone }()

	retention := cfg.AttemptRetention
	if retention == 0 {
		retention = -1 // 0 in the environment: record none
	}
	d := dispatch.New(st, dispatch.Config{
		MaxInFlight: cfg.MaxInFlight, AttemptTimeout: cfg.AttemptTimeout, MaxAttempts: cfg.MaxAttempts,
		MaxAge: cfg.MaxAge, ShutdownTimeout: cfg.ShutdownTimeout, AttemptRetention: retention,
		Guard:          dispatch.Guard{AllowPrivate: cfg.AllowPrivateURLs},
		UserAgent:      "fstore-dispatcher/" + version + " (+https://github.com/fstore/fstore)",
		TracerProvider: tp,
	}, logger, metrics)
	err = d.Run(ctx)
	logger.Info().Msg("stopped pushing; shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	return err
}
