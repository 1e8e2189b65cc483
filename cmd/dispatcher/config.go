package main

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/fstore/fstore/internal/startup"
)

// config is the dispatcher's whole configuration, read from the environment.
type config struct {
	// PostgreSQL connection string. No default: make run sets it.
	DatabaseURL string `env:"DATABASE_URL,required,notEmpty"`
	// A hot standby for the views' status the metrics report. Default: none.
	ReadDatabaseURL string `env:"FSTORE_READ_DATABASE_URL"`
	// Listen address of /metrics and /healthz. Default 127.0.0.1:9090, like
	// the API: metrics name views and are for this machine unless asked.
	MetricsAddr string `env:"FSTORE_METRICS_ADDR" envDefault:"127.0.0.1:9090"`
	// Let pushes reach loopback and private addresses. Default false.
	AllowPrivateURLs bool `env:"FSTORE_ALLOW_PRIVATE_URLS" envDefault:"false"`
	// Partitions in flight at once. Default 256.
	MaxInFlight int `env:"FSTORE_DISPATCH_MAX_IN_FLIGHT" envDefault:"256"`
	// Timeout of one push. Default 15s.
	AttemptTimeout time.Duration `env:"FSTORE_DISPATCH_TIMEOUT" envDefault:"15s"`
	// Park a partition after this many failed pushes. Default 20.
	MaxAttempts int `env:"FSTORE_DISPATCH_MAX_ATTEMPTS" envDefault:"20"`
	// …or after failing for this long. Default 72h.
	MaxAge time.Duration `env:"FSTORE_DISPATCH_MAX_AGE" envDefault:"72h"`
	// How long push attempts are kept (at most the last 100 per
	// partition); 0 records none. Default 168h.
	AttemptRetention time.Duration `env:"FSTORE_ATTEMPT_RETENTION" envDefault:"168h"`
	// How long shutdown lets pushes in flight finish. Default 20s.
	ShutdownTimeout time.Duration `env:"FSTORE_SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// How long start-up waits for the database. Default 60s.
	ConnectTimeout time.Duration `env:"FSTORE_CONNECT_TIMEOUT" envDefault:"60s"`
	// trace, debug, info, warn or error. Default info.
	LogLevel string `env:"FSTORE_LOG_LEVEL" envDefault:"info"`
	// json or console. Default json.
	LogFormat string `env:"FSTORE_LOG_FORMAT" envDefault:"json"`
}

func loadConfig() (config, error) {
	cfg, err := startup.LoadEnv[config]()
	if err != nil {
		return cfg, err
	}
	var errs []error
	if _, _, err := net.SplitHostPort(cfg.MetricsAddr); err != nil {
		errs = append(errs, fmt.Errorf("FSTORE_METRICS_ADDR %q: want host:port", cfg.MetricsAddr))
	}
	if cfg.MaxInFlight < 1 || cfg.MaxInFlight > 100000 {
		errs = append(errs, fmt.Errorf("FSTORE_DISPATCH_MAX_IN_FLIGHT %d: want 1 to 100000", cfg.MaxInFlight))
	}
	if cfg.AttemptTimeout < time.Second {
		errs = append(errs, fmt.Errorf("FSTORE_DISPATCH_TIMEOUT %s: want at least 1s", cfg.AttemptTimeout))
	}
	if cfg.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("FSTORE_DISPATCH_MAX_ATTEMPTS %d: want at least 1", cfg.MaxAttempts))
	}
	if cfg.AttemptRetention < 0 {
		errs = append(errs, fmt.Errorf("FSTORE_ATTEMPT_RETENTION %s: want 0 (record none) or more", cfg.AttemptRetention))
	}
	errs = append(errs, startup.CheckLogging(cfg.LogLevel, cfg.LogFormat))
	return cfg, errors.Join(errs...)
}

// MarshalZerologObject logs the configuration with secrets masked.
func (c config) MarshalZerologObject(e *zerolog.Event) {
	e.Str("database_url", startup.RedactURL(c.DatabaseURL)).Str("read_database_url", startup.RedactURL(c.ReadDatabaseURL)).
		Str("metrics_addr", c.MetricsAddr).
		Bool("allow_private_urls", c.AllowPrivateURLs).Int("max_in_flight", c.MaxInFlight).
		Str("attempt_timeout", c.AttemptTimeout.String()).Int("max_attempts", c.MaxAttempts).
		Str("max_age", c.MaxAge.String()).Str("attempt_retention", c.AttemptRetention.String()).
		Str("shutdown_timeout", c.ShutdownTimeout.String()).Str("log_level", c.LogLevel)
}
