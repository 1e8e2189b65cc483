package dispatch

import (
	"context"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/fstore/fstore/internal/store"
)

// HeartbeatStore is what the heartbeat needs of the storage; *store.Store
// provides it.
type HeartbeatStore interface {
	RecordHeartbeat(ctx context.Context, hb store.Heartbeat) error
	RemoveHeartbeat(ctx context.Context, id uuid.UUID) error
}

var _ HeartbeatStore = (*store.Store)(nil)

// DefaultHeartbeatInterval is how often a dispatcher records that it is
// alive: often enough that the console tells a dead one within
// store.HeartbeatMisses × 5 s, rarely enough to cost nothing (one upsert).
const DefaultHeartbeatInterval = 5 * time.Second

// NewHeartbeat describes this process: a fresh id, the host name, the pid
// and where its metrics listen.
func NewHeartbeat(metricsAddr, version string, interval time.Duration) store.Heartbeat {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	if interval <= 0 {
		interval = DefaultHeartbeatInterval
	}
	return store.Heartbeat{DispatcherID: uuid.New(), Host: host, PID: os.Getpid(), MetricsAddr: metricsAddr,
		Version: version, StartedAt: time.Now(), Interval: interval}
}

// RunHeartbeat records hb at once and then every hb.Interval until ctx is
// done, then removes it: the API lists dispatchers from these rows (the
// console may reach nothing but the API). A failed beat is logged and
// tried again at the next tick; the dispatcher goes on pushing meanwhile.
func RunHeartbeat(ctx context.Context, st HeartbeatStore, hb store.Heartbeat, logger zerolog.Logger) {
	beat := func() {
		// A beat never waits longer than its interval: the next one follows.
		bctx, cancel := context.WithTimeout(ctx, hb.Interval)
		defer cancel()
		if err := st.RecordHeartbeat(bctx, hb); err != nil && ctx.Err() == nil {
			logger.Warn().Err(err).Msg("heartbeat not recorded")
		}
	}
	beat()
	tick := time.NewTicker(hb.Interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			beat()
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := st.RemoveHeartbeat(rctx, hb.DispatcherID); err != nil {
				logger.Warn().Err(err).Msg("heartbeat not removed at shutdown")
			}
			return
		}
	}
}
