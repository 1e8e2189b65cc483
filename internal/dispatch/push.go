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
	"time"

	"github.com/rs/zerolog"

	"github.com/fstore/fstore/internal/store"
)

// One partition's pushes: send each leased event, record the attempts, and
// settle the lease with them in one round trip.

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
func (d *Dispatcher) send(ctx context.Context, v store.PushView, signer *Signer, e store.Event) (res pushResult) {
	body, err := json.Marshal(e)
	if err != nil {
		return pushResult{err: err}
	}
	ctx, span := d.startPush(ctx, v, e)
	defer func() { endPush(span, res.status, res.err) }()
	ctx, cancel := context.WithTimeout(ctx, d.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.URL, bytes.NewReader(body))
	if err != nil {
		return pushResult{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.cfg.UserAgent)
	traceHeaders(ctx, req.Header)
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
