package main

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/fstore/fstore/internal/startup"
)

// config is the API's whole configuration, read from the environment.
type config struct {
	// PostgreSQL connection string. No default: make run starts a local
	// PostgreSQL and sets it. pgxpool settings (pool_max_conns=…) apply.
	DatabaseURL string `env:"DATABASE_URL,required,notEmpty"`
	// A hot standby of that database for projection reads: cursor reads of
	// the log or a decider, queries, views' status. Default: none (every
	// read goes to DATABASE_URL).
	ReadDatabaseURL string `env:"FSTORE_READ_DATABASE_URL"`
	// Listen address. Default 127.0.0.1:8080.
	Addr string `env:"FSTORE_ADDR" envDefault:"127.0.0.1:8080"`
	// Comma-separated bearer keys; when set every /v1 route needs one.
	// Default: none (no auth, loopback only unless Insecure).
	APIKeys []string `env:"FSTORE_API_KEYS" envSeparator:","`
	// Allow listening beyond loopback without API keys. Default false.
	Insecure bool `env:"FSTORE_INSECURE" envDefault:"false"`
	// Largest accepted request body in bytes. Default 8 MiB.
	MaxBodyBytes int64 `env:"FSTORE_MAX_BODY_BYTES" envDefault:"8388608"`
	// Let views push to loopback and private addresses, as the dispatcher
	// does with the same setting: registration refuses a URL the dispatcher
	// would never reach. Default false.
	AllowPrivateURLs bool `env:"FSTORE_ALLOW_PRIVATE_URLS" envDefault:"false"`
	// Live followers (SSE, NDJSON) this process serves at most; one more is
	// answered 503. Default 1000.
	MaxSubscribers int `env:"FSTORE_MAX_SUBSCRIBERS" envDefault:"1000"`
	// How long shutdown waits for in-flight requests. Default 20s.
	ShutdownTimeout time.Duration `env:"FSTORE_SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// How long start-up waits for the database to answer. Default 60s.
	ConnectTimeout time.Duration `env:"FSTORE_CONNECT_TIMEOUT" envDefault:"60s"`
	// When set, serve Go's pprof profiles on this (loopback) address, for
	// diagnosing CPU and memory use. Default: off.
	PprofAddr string `env:"FSTORE_PPROF_ADDR"`
	// trace, debug, info, warn or error. Default info.
	LogLevel string `env:"FSTORE_LOG_LEVEL" envDefault:"info"`
	// json (one object per line) or console (for people). Default json.
	LogFormat string `env:"FSTORE_LOG_FORMAT" envDefault:"json"`
}

// loadConfig reads and validates the configuration.
func loadConfig() (config, error) {
	cfg, err := startup.LoadEnv[config]()
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.validate()
}

func (c *config) validate() error {
	var errs []error
	keys := c.APIKeys[:0]
	for _, k := range c.APIKeys {
		if k == "" {
			continue
		}
		if k == "ro:" {
			errs = append(errs, errors.New(`FSTORE_API_KEYS: "ro:" needs a key after it`))
			continue
		}
		keys = append(keys, k)
	}
	c.APIKeys = keys
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil || port == "" {
		errs = append(errs, fmt.Errorf("FSTORE_ADDR %q: want host:port", c.Addr))
	} else if len(c.APIKeys) == 0 && !c.Insecure && !startup.IsLoopback(host) {
		errs = append(errs, fmt.Errorf("FSTORE_ADDR %q is not a loopback address and FSTORE_API_KEYS is empty: "+
			"set API keys, or FSTORE_INSECURE=true to serve without authentication", c.Addr))
	}
	if c.PprofAddr != "" {
		if h, _, err := net.SplitHostPort(c.PprofAddr); err != nil || !startup.IsLoopback(h) {
			errs = append(errs, fmt.Errorf("FSTORE_PPROF_ADDR %q: want a loopback host:port", c.PprofAddr))
		}
	}
	if c.MaxSubscribers < 1 {
		errs = append(errs, fmt.Errorf("FSTORE_MAX_SUBSCRIBERS %d: want at least 1", c.MaxSubscribers))
	}
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("FSTORE_MAX_BODY_BYTES %d: want at least 1024", c.MaxBodyBytes))
	}
	errs = append(errs, startup.CheckLogging(c.LogLevel, c.LogFormat))
	return errors.Join(errs...)
}

// MarshalZerologObject logs the configuration with secrets masked.
func (c config) MarshalZerologObject(e *zerolog.Event) {
	e.Str("database_url", startup.RedactURL(c.DatabaseURL)).
		Str("read_database_url", startup.RedactURL(c.ReadDatabaseURL)).
		Str("addr", c.Addr).
		Int("api_keys", len(c.APIKeys)).
		Bool("insecure", c.Insecure).
		Bool("allow_private_urls", c.AllowPrivateURLs).
		Int64("max_body_bytes", c.MaxBodyBytes).
		Int("max_subscribers", c.MaxSubscribers).
		Str("shutdown_timeout", c.ShutdownTimeout.String()).
		Str("log_level", c.LogLevel)
}
