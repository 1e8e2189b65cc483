// Package httpapi is fstore's REST/JSON API: the routes of API.md over the
// store, JSON in and out, every error as application/problem+json.
//
//	@title						fstore API
//	@version					0.1.0
//	@description				An event store on PostgreSQL: append-only event streams with optimistic locking, read by stream, decider or whole log, or followed live (Server-Sent Events, NDJSON); views (consumer groups) lease partitions to consumers with fenced leases.
//	@license.name				Apache-2.0
//	@BasePath					/
//	@securityDefinitions.apikey	bearer
//	@in							header
//	@name						Authorization
//	@description				"Bearer <key>", required on /v1 routes when the server has FSTORE_API_KEYS set. A live follow of GET /v1/events (EventSource cannot send headers) may pass the key as ?access_token= instead.
package httpapi

import (
	"context"
	"io/fs"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/fstore/fstore/internal/store"
)

// Store is what the API needs of the storage; *store.Store provides it.
type Store interface {
	RegisterEventType(ctx context.Context, t store.EventType) (store.EventType, bool, error)
	ListDeciders(ctx context.Context) ([]store.Decider, error)
	GetDecider(ctx context.Context, name string) (store.Decider, error)
	AppendEvents(ctx context.Context, evs []store.NewEvent) (store.AppendResult, error)
	ReadEvents(ctx context.Context, q store.ReadQuery) ([]store.Event, error)
	QueryEvents(ctx context.Context, q store.Query, after int64, limit int) (store.QueryResult, error)
	AppendEventsIf(ctx context.Context, evs []store.NewEvent, cond store.Condition) (store.AppendResult, error)
	LastEvent(ctx context.Context, decider, deciderID string) (store.Event, error)
	GetEvent(ctx context.Context, id uuid.UUID) (store.Event, error)
	RegisterView(ctx context.Context, r store.ViewRegistration) (store.View, bool, error)
	GetView(ctx context.Context, name string) (store.View, error)
	ListViews(ctx context.Context) ([]store.View, error)
	DeleteView(ctx context.Context, name string) error
	LeaseEvents(ctx context.Context, view string, r store.LeaseRequest) ([]store.LeasedEvent, error)
	Ack(ctx context.Context, view, decider, deciderID string, offset int64, leaseID uuid.UUID) (store.Partition, error)
	Nack(ctx context.Context, view, decider, deciderID string, leaseID uuid.UUID, retryAfter time.Duration, reason string) (store.Partition, error)
	RetryPartition(ctx context.Context, view, decider, deciderID string) (store.Partition, error)
	ListPartitions(ctx context.Context, view string, q store.PartitionQuery) ([]store.PartitionState, error)
	PartitionDetail(ctx context.Context, view, decider, deciderID string) (store.PartitionDetail, error)
	Attempts(ctx context.Context, view, decider, deciderID string, limit int) ([]store.Attempt, error)
	SkipEvent(ctx context.Context, view, decider, deciderID string, offset int64) (store.PartitionDetail, error)
	ReplayPartition(ctx context.Context, view, decider, deciderID string, after int64) (store.PartitionDetail, error)
	RetryParked(ctx context.Context, view string) (int64, error)
	WatchLog() (<-chan struct{}, func())
	Follow(ctx context.Context, f store.Filter, after int64) (*store.Follower, error)
	LogStatus(ctx context.Context) (store.LogStatus, error)
	ListDispatchers(ctx context.Context) ([]store.DispatcherStatus, error)
	Ping(ctx context.Context) error
	SchemaVersion(ctx context.Context) (int, error)
}

var _ Store = (*store.Store)(nil)

// Options configures the API. The zero value of each field is its default.
type Options struct {
	// Logger receives access logs and internal errors. Default: a no-op logger.
	Logger zerolog.Logger
	// APIKeys, when not empty, are the bearer keys every /v1 route requires;
	// "ro:<key>" is a read-only key (reads and consumes, no appends or registrations).
	APIKeys []string
	// MaxBodyBytes bounds request bodies. Default: DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// SchemaVersion is the migration the database must be at for /readyz.
	SchemaVersion int
	// ReadyTimeout bounds the database checks of /readyz. Default: 2 s.
	ReadyTimeout time.Duration
	// AllowPrivateURLs lets views push to loopback and private addresses,
	// as the dispatcher's FSTORE_ALLOW_PRIVATE_URLS does: registration
	// refuses a URL the dispatcher would never reach.
	AllowPrivateURLs bool
	// TracerProvider, when set, traces every request (a server span named
	// by its route, continuing the caller's W3C trace context) and the store
	// calls under it. Default: nil, no spans. Either way an appended event
	// keeps the request's trace context in its metadata.
	TracerProvider trace.TracerProvider
	// MaxSubscribers bounds the live followers of this process; one more
	// is answered 503. Default: DefaultMaxSubscribers.
	MaxSubscribers int
	// Heartbeat is the longest silence of a live response. Default:
	// DefaultHeartbeat.
	Heartbeat time.Duration
	// LiveWriteTimeout cuts off a live follower whose write has not
	// finished after this long (it stopped reading). Default:
	// DefaultLiveWriteTimeout.
	LiveWriteTimeout time.Duration
	// Console holds the built operator console (web.Console): index.html
	// and its assets at the root. nil: /console answers 404.
	Console fs.FS
}

// DefaultMaxBodyBytes fits a batch of 1,000 events of about 8 KiB each.
const DefaultMaxBodyBytes = 8 << 20

// Server holds the API's dependencies; its Handler serves the routes.
type Server struct {
	store Store
	opts  Options
	// stopping is closed by StopWaiting: long polls then answer at once.
	stopping chan struct{}
	stopOnce sync.Once
	metrics  *httpMetrics
	// Live follows: stopCtx ends when StopWaiting is called.
	stopCtx     context.Context
	stopFollows context.CancelFunc
	subscribers atomic.Int64
	console     map[string]consoleFile
}

// NewServer returns the API over st.
func NewServer(st Store, opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 2 * time.Second
	}
	if opts.MaxSubscribers <= 0 {
		opts.MaxSubscribers = DefaultMaxSubscribers
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.LiveWriteTimeout <= 0 {
		opts.LiveWriteTimeout = DefaultLiveWriteTimeout
	}
	console, err := consoleFiles(opts.Console)
	if err != nil {
		// An embed.FS always reads; another fs.FS may not. The API serves on
		// without a console rather than not at all.
		opts.Logger.Error().Err(err).Msg("console assets unreadable: /console answers 404")
	}
	s := &Server{store: traceStore(st, opts.TracerProvider), opts: opts, stopping: make(chan struct{}),
		metrics: newHTTPMetrics(st), console: console}
	s.stopCtx, s.stopFollows = context.WithCancel(context.Background())
	return s
}

// StopWaiting makes every long poll answer now with what it has (nothing),
// and ends every live follow with a final frame saying so, so that a
// shutdown does not wait for them. Call it before http.Server.Shutdown.
func (s *Server) StopWaiting() {
	s.stopOnce.Do(func() { close(s.stopping); s.stopFollows() })
}

// Handler returns the whole route table.
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(nameSpans)
	r.Use(requestLogging(s.opts.Logger)...)
	r.Use(recoverer)
	r.Use(s.metrics.middleware)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, newProblem(http.StatusNotFound, "not-found", "Not found", "no route for "+r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, newProblem(http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed",
			r.Method+" is not allowed on "+r.URL.Path))
	})

	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	r.Method(http.MethodGet, "/metrics", s.metrics.handler)
	r.Get("/openapi.json", serveOpenAPIJSON)
	r.Get("/openapi.yaml", serveOpenAPIYAML)
	r.Get("/docs", redirectToDocs)
	r.Get("/docs/*", serveDocs)
	r.Get("/console", redirectToConsole)
	r.Get("/console/*", s.serveConsole)

	r.Route("/v1", func(r chi.Router) {
		r.Use(accessTokenParam, bearerAuth(s.opts.APIKeys))
		// Each route names the query parameters it takes; any other is a 400.
		none := queryParams()
		// Reading and consuming: any key.
		r.With(none).Get("/status", s.getStatus)
		r.With(none).Get("/deciders", s.listDeciders)
		r.With(none).Get("/deciders/{decider}", s.getDecider)
		r.With(queryParams("decider", "decider_id", "tag", "after", "limit", "events")).Get("/events", s.readEvents)
		r.With(queryParams("decider", "decider_id")).Get("/events/last", s.lastEvent)
		r.With(none).Get("/events/{event_id}", s.getEvent)
		r.With(none).Post("/events/query", s.queryEvents)
		r.With(none).Get("/views", s.listViews)
		r.With(none).Get("/views/{view}", s.getView)
		r.With(none).Post("/views/{view}/stream", s.streamEvents)
		r.With(none).Post("/views/{view}/ack", s.ackEvent)
		r.With(none).Post("/views/{view}/nack", s.nackEvent)
		r.With(queryParams("state", "after", "limit")).Get("/views/{view}/partitions", s.listPartitions)
		r.With(none).Get("/views/{view}/partitions/{decider}/{decider_id}", s.getPartition)
		r.With(queryParams("limit")).Get("/views/{view}/partitions/{decider}/{decider_id}/attempts", s.listAttempts)

		// Appending and registering: read-write keys only.
		r.Group(func(r chi.Router) {
			r.Use(requireWrite, none)
			r.Post("/deciders/{decider}/events", s.registerEventType)
			r.Post("/events", s.appendEvent)
			r.Post("/events/batch", s.appendBatch)
			r.Put("/views/{view}", s.registerView)
			r.Delete("/views/{view}", s.deleteView)
			r.Post("/views/{view}/partitions/{decider}/{decider_id}/retry", s.retryPartition)
			r.Post("/views/{view}/partitions/{decider}/{decider_id}/skip", s.skipEvent)
			r.Post("/views/{view}/partitions/{decider}/{decider_id}/replay", s.replayPartition)
			r.Post("/views/{view}/retry", s.retryParked)
		})
	})
	return traceRequests(r, s.opts.TracerProvider)
}
