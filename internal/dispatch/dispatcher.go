package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

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
		st: st, cfg: cfg, log: log, obs: obs,
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

// pushPartition pushes a partition's leased events one after the other and
// settles the lease once, with the attempts, in one round trip: an ack of
// the last one pushed, or a recorded failure that also acks those pushed
// before it. It stops early rather than push past the lease's end.
func (d *Dispatcher) pushPartition(ctx context.Context, v store.PushView, signer *Signer, evs []store.LeasedEvent, leaseEnd time.Time) {
	head := evs[0]
	log := d.log.With().Str("view", v.View).Str("decider", head.Decider).Str("decider_id", head.DeciderID).Logger()
	var settled store.Settlement
	outcome := "ok"
	for i, e := range evs {
		if i > 0 && time.Until(leaseEnd) < d.cfg.AttemptTimeout {
			break // the rest wait for the next lease
		}
		start := time.Now()
		res := d.send(ctx, v, signer, e.Event)
		d.record(&settled, e, start, res)
		switch {
		case res.err == nil && res.status >= 200 && res.status < 300:
			settled.AckedOffset = e.Offset
		case ctx.Err() != nil:
			outcome = "cancelled" // shutting down: free the partition at once
		case res.status == http.StatusGone:
			outcome = "gone"
			log.Warn().Msg("receiver answered 410 Gone: push delivery disabled for the view")
			if err := d.st.DisableDispatch(context.WithoutCancel(ctx), v.View, "the receiver answered 410 Gone"); err != nil {
				logSettleError(log, err, "disabling push delivery")
			}
			d.stale.Store(true)
		default:
			outcome = d.failure(&settled, head, res)
		}
		d.observe(v.View, outcome, time.Since(start))
		if outcome != "ok" {
			break
		}
	}
	d.settle(ctx, v, head, settled, log)
}

// pushResult is what one push came back with.
type pushResult struct {
	status     int
	retryAfter time.Duration
	body       string // the first bytes of the answer's body
	err        error
}

// record adds a push to the lease's attempts, unless attempts are not kept.
func (d *Dispatcher) record(settled *store.Settlement, e store.LeasedEvent, start time.Time, res pushResult) {
	if d.cfg.AttemptRetention < 0 {
		return
	}
	a := store.Attempt{At: start, Kind: "push", EventID: &e.EventID, Offset: &e.Offset,
		DurationMs: float64(time.Since(start).Microseconds()) / 1000}
	if res.status != 0 {
		a.Status = &res.status
		a.Response = &res.body
	}
	if why := reason(res); why != "" {
		a.Error = &why
	}
	settled.Attempts = append(settled.Attempts, a)
}

// reason names a failed push for operators; "" for a delivery.
func reason(res pushResult) string {
	switch {
	case res.err != nil:
		return errorClass(res.err)
	case res.status < 200 || res.status >= 300:
		return fmt.Sprintf("HTTP %d", res.status)
	}
	return ""
}

// failure describes the failed push that ends the lease and returns the
// outcome's name. The backoff counts from the failures the lease reported,
// so no round trip is needed to learn them.
func (d *Dispatcher) failure(settled *store.Settlement, head store.LeasedEvent, res pushResult) string {
	delay := res.retryAfter
	if delay == 0 {
		delay = d.cfg.Backoff.Delay(head.Attempts + 1)
	}
	settled.Failure = &store.Failure{Error: reason(res), Status: res.status, RetryAt: time.Now().Add(delay),
		MaxAttempts: d.cfg.MaxAttempts, MaxAge: d.cfg.MaxAge}
	if res.err != nil {
		return "error"
	}
	return "http_error"
}

// settle ends the lease in one round trip and logs how.
func (d *Dispatcher) settle(ctx context.Context, v store.PushView, head store.LeasedEvent, settled store.Settlement, log zerolog.Logger) {
	p, err := d.st.SettlePush(context.WithoutCancel(ctx), v.View, head.Decider, head.DeciderID, head.LeaseID, settled)
	f := settled.Failure
	switch {
	case err != nil && f == nil && settled.AckedOffset > 0:
		// Delivered; the events will be pushed again (at least once).
		d.observe(v.View, "ack_failed", 0)
		logSettleError(log, err, "delivered, but the ack was refused")
	case err != nil:
		logSettleError(log, err, "settling the lease")
	case f != nil && p.Parked:
		d.observe(v.View, "parked", 0)
		log.Error().Str("error", f.Error).Int("attempts", p.Attempts).Msg("partition parked: retry it with POST .../retry")
	case f != nil:
		log.Info().Str("error", f.Error).Int("attempts", p.Attempts).Str("retry_in", time.Until(f.RetryAt).Round(time.Millisecond).String()).
			Msg("push failed")
	}
}

func (d *Dispatcher) observe(view, outcome string, dur time.Duration) {
	if d.obs != nil {
		d.obs.Attempt(view, outcome, dur)
	}
}

// logSettleError logs a refused settlement; a view deleted meanwhile is
// expected and only worth a debug line.
func logSettleError(log zerolog.Logger, err error, msg string) {
	if errors.Is(err, store.ErrNotFound) {
		log.Debug().Err(err).Msg(msg)
		return
	}
	log.Warn().Err(err).Msg(msg)
}

// pruneAttempts deletes attempts older than the retention once a minute,
// in bounded batches through the index on their time, until ctx ends.
// Several dispatchers may prune at once: each deletes different rows or none.
func (d *Dispatcher) pruneAttempts(ctx context.Context) {
	const batch = 10000
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		for {
			n, err := d.st.PruneAttempts(ctx, time.Now().Add(-d.cfg.AttemptRetention), batch)
			if err != nil {
				if ctx.Err() == nil {
					d.log.Warn().Err(err).Msg("pruning push attempts")
				}
				break
			}
			if n < batch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// send POSTs the event, signed, and returns the status, any Retry-After,
// and the first KiB of the answer's body.
func (d *Dispatcher) send(ctx context.Context, v store.PushView, signer *Signer, e store.Event) pushResult {
	body, err := json.Marshal(e)
	if err != nil {
		return pushResult{err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.URL, bytes.NewReader(body))
	if err != nil {
		return pushResult{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.cfg.UserAgent)
	signer.Sign(req.Header, e.EventID.String(), time.Now(), body)
	resp, err := d.client.Do(req)
	if err != nil {
		return pushResult{err: err}
	}
	defer resp.Body.Close()
	head := make([]byte, store.MaxAttemptResponse)
	n, _ := io.ReadFull(resp.Body, head)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
	retryAfter, _ := RetryAfter(resp.Header, time.Now(), time.Second, d.cfg.RetryAfterMax)
	return pushResult{status: resp.StatusCode, retryAfter: retryAfter, body: string(head[:n])}
}

// errorClass names a transport error for operators.
func errorClass(err error) string {
	var netErr net.Error
	switch {
	case errors.Is(err, ErrForbiddenAddress):
		return "forbidden address: " + err.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.Is(err, syscallECONNREFUSED):
		return "connection refused"
	}
	return "transport error: " + err.Error()
}
