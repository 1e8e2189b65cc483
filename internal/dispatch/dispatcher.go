package dispatch

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/fstore/fstore/internal/store"
)

// Store is what the dispatcher needs of the storage; *store.Store provides it.
type Store interface {
	PushViews(ctx context.Context) ([]store.PushView, error)
	LeaseEvents(ctx context.Context, view string, r store.LeaseRequest) ([]store.LeasedEvent, error)
	SettlePush(ctx context.Context, view, decider, deciderID string, leaseID uuid.UUID, st store.Settlement) (store.Partition, error)
	DisableDispatch(ctx context.Context, view, reason string) error
	PruneAttempts(ctx context.Context, before time.Time, limit int) (int64, error)
	WatchLog() (<-chan struct{}, func())
}

var _ Store = (*store.Store)(nil)

// Config tunes the dispatcher. The zero value of each field is its default.
type Config struct {
	// Partitions in flight at once, over all views. Default 256.
	MaxInFlight int
	// Timeout of one push. Default 15 s.
	AttemptTimeout time.Duration
	// Park a partition after this many failed pushes… Default 20.
	MaxAttempts int
	// …or after failing for this long. Default 72 h.
	MaxAge time.Duration
	// Spacing of retries. Default 1 s to 6 h.
	Backoff Backoff
	// A receiver's Retry-After is honoured between 1 s and this. Default 1 h.
	RetryAfterMax time.Duration
	// How often to look for work when no new event is heard of, for views
	// without polling_delay_s. Default 1 s.
	PollInterval time.Duration
	// How long Run lets in-flight pushes finish after its context ends
	// before cancelling them. Default 20 s.
	ShutdownTimeout time.Duration
	// Guard for the addresses pushed to.
	Guard Guard
	// The user-agent header. Default "fstore-dispatcher".
	UserAgent string
	// Traces every push, as a child of its event's trace (trace.go).
	// Default: the global tracer provider (no spans unless one is set).
	TracerProvider trace.TracerProvider
	// How long push attempts are kept (at most the last 100 per
	// partition). Default 168 h; negative: attempts are not recorded.
	AttemptRetention time.Duration
}

func (c *Config) defaults() {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 256
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = 15 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 20
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 72 * time.Hour
	}
	if c.RetryAfterMax <= 0 {
		c.RetryAfterMax = time.Hour
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 20 * time.Second
	}
	if c.UserAgent == "" {
		c.UserAgent = "fstore-dispatcher"
	}
	if c.AttemptRetention == 0 {
		c.AttemptRetention = 168 * time.Hour
	}
}

// Observer is told about every push attempt (metrics); it may be nil.
type Observer interface {
	Attempt(view, outcome string, d time.Duration)
}

// Dispatcher pushes the events of every view with an edge_function_url to
// that URL, one event in flight per partition, many partitions at once.
// Several dispatchers may run against one database: leases keep a
// partition with one of them at a time.
type Dispatcher struct {
	st     Store
	cfg    Config
	client *http.Client
	log    zerolog.Logger
	obs    Observer
	tracer trace.Tracer

	slots chan struct{} // one per push in flight
	freed chan struct{} // a push finished: there may be room to lease
	next  int           // round-robin start over the views
	// stale asks Run to list the views again before the next round (a view
	// was disabled); otherwise it lists them at most once per PollInterval.
	stale atomic.Bool
}

// New returns a dispatcher; obs may be nil.
func New(st Store, cfg Config, log zerolog.Logger, obs Observer) *Dispatcher {
	cfg.defaults()
	return &Dispatcher{
		st: st, cfg: cfg, log: log, obs: obs, tracer: tracerOf(cfg.TracerProvider),
		client: NewClient(cfg.Guard, cfg.AttemptTimeout),
		slots:  make(chan struct{}, cfg.MaxInFlight),
		freed:  make(chan struct{}, 1),
	}
}

// Run pushes until ctx ends, then stops leasing, lets the pushes in flight
// finish for up to ShutdownTimeout, cancels the rest and gives their leases
// back. It returns nil after a shutdown.
func (d *Dispatcher) Run(ctx context.Context) error {
	// Pushes outlive ctx: a shutdown lets them finish.
	pushCtx, cancelPushes := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPushes()
	var inFlight sync.WaitGroup
	if d.cfg.AttemptRetention > 0 {
		inFlight.Go(func() { d.pruneAttempts(ctx) })
	}
	var views []store.PushView
	polled := map[string]time.Time{} // each view's last lease attempt
	list, byTimer := true, false
	for ctx.Err() == nil {
		changed, release := d.st.WatchLog()
		// Rounds come as often as pushes finish; those rounds reuse the views
		// listed last. New events (a new view may come with them), the poll
		// timer and a disabled view list them again.
		if list || d.stale.Swap(false) {
			fresh, err := d.st.PushViews(ctx)
			switch {
			case err == nil:
				views = fresh
			case ctx.Err() == nil:
				d.log.Warn().Err(err).Msg("listing views to push")
			}
		}
		now := time.Now()
		wait := d.cfg.PollInterval
		for _, v := range d.rotate(views) {
			// A round the timer woke looks only at the views whose polling
			// delay has passed: nothing new was heard of, and what may have
			// come due (a retry, an expired lease) waits that long.
			delay := d.pollingDelay(v)
			if due := polled[v.View].Add(delay).Sub(now); byTimer && due > 0 {
				wait = min(wait, due)
				continue
			}
			polled[v.View] = now
			wait = min(wait, delay)
			d.leaseAndPush(ctx, pushCtx, v, &inFlight)
		}
		timer := time.NewTimer(wait)
		list, byTimer = true, false
		select {
		case <-ctx.Done():
		case <-changed:
		case <-d.freed:
			list = false
		case <-timer.C:
			byTimer = true
		}
		timer.Stop()
		release()
	}
	done := make(chan struct{})
	go func() { inFlight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d.cfg.ShutdownTimeout):
		d.log.Warn().Msg("shutdown: cancelling the pushes still in flight")
		cancelPushes()
		<-done
	}
	return nil
}

// pollingDelay is how often v is looked at when nothing new is heard of: its
// polling_delay_s, or the dispatcher's PollInterval.
func (d *Dispatcher) pollingDelay(v store.PushView) time.Duration {
	if v.PollingDelay > 0 {
		return v.PollingDelay
	}
	return d.cfg.PollInterval
}

// rotate starts the views at a different one each round, so that no view
// takes every slot first.
func (d *Dispatcher) rotate(views []store.PushView) []store.PushView {
	if len(views) == 0 {
		return nil
	}
	d.next = (d.next + 1) % len(views)
	return append(views[d.next:len(views):len(views)], views[:d.next]...)
}

// pushBatch is how many consecutive events of a partition one lease takes:
// they are pushed one after the other and acked once, which saves a lease
// and an ack per event.
const pushBatch = 10

// leaseAndPush leases as many partitions of v as there are free slots and
// pushes their events.
func (d *Dispatcher) leaseAndPush(ctx, pushCtx context.Context, v store.PushView, inFlight *sync.WaitGroup) {
	free := cap(d.slots) - len(d.slots)
	if free <= 0 || ctx.Err() != nil {
		return
	}
	signer, err := NewSigner(v.Secrets...)
	if err != nil {
		d.log.Error().Err(err).Str("view", v.View).Msg("view has no usable secret")
		return
	}
	// The lease outlives a push (so no other dispatcher takes the partition
	// while this one still waits for the receiver) and little more: after a
	// crash its partitions are free again soon. The view's lock_timeout_s
	// is for consumers that poll.
	lease := 2 * d.cfg.AttemptTimeout
	leasedAt := time.Now()
	evs, err := d.st.LeaseEvents(ctx, v.View, store.LeaseRequest{Limit: min(free, 1000), MaxPerPartition: pushBatch, LockTimeout: lease})
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn().Err(err).Str("view", v.View).Msg("leasing")
		}
		return
	}
	for _, batch := range byPartition(evs) {
		d.slots <- struct{}{}
		inFlight.Go(func() {
			defer func() {
				<-d.slots
				select {
				case d.freed <- struct{}{}:
				default:
				}
			}()
			d.pushPartition(pushCtx, v, signer, batch, leasedAt.Add(lease))
		})
	}
}

// byPartition groups leased events by partition, each group in offset order.
func byPartition(evs []store.LeasedEvent) [][]store.LeasedEvent {
	index := map[[2]string]int{}
	var out [][]store.LeasedEvent
	for _, e := range evs {
		k := [2]string{e.Decider, e.DeciderID}
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], e)
	}
	return out
}
