package dispatch

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fstore/fstore/internal/store"
)

// Metrics is the dispatcher's Prometheus Observer.
type Metrics struct {
	attempts *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers the dispatcher's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fstore_dispatch_attempts_total",
			Help: "Push attempts by view and outcome (ok, http_error, error, parked, gone, cancelled, ack_failed).",
		}, []string{"view", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fstore_dispatch_attempt_duration_seconds",
			Help:    "Duration of push attempts, settling the lease included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"view"}),
	}
	reg.MustRegister(m.attempts, m.latency)
	return m
}

// Attempt records one push attempt.
func (m *Metrics) Attempt(view, outcome string, d time.Duration) {
	m.attempts.WithLabelValues(view, outcome).Inc()
	m.latency.WithLabelValues(view).Observe(d.Seconds())
}

// ViewLister reads views with their status.
type ViewLister interface {
	ListViews(ctx context.Context) ([]store.View, error)
}

// viewCollector reports every view's lag and parked partitions when scraped.
type viewCollector struct {
	views   ViewLister
	pending *prometheus.Desc
	parked  *prometheus.Desc
	behind  *prometheus.Desc
	failing *prometheus.Desc
}

// RegisterViewMetrics reports, at each scrape, every view's events pending
// (lag), partitions behind, failing and parked, read from the database in
// three queries whatever the number of views.
func RegisterViewMetrics(reg prometheus.Registerer, views ViewLister) {
	reg.MustRegister(&viewCollector{
		views:   views,
		pending: prometheus.NewDesc("fstore_view_events_pending", "Events not yet acked (lag).", []string{"view"}, nil),
		parked:  prometheus.NewDesc("fstore_view_partitions_parked", "Partitions parked after repeated push failures.", []string{"view"}, nil),
		behind:  prometheus.NewDesc("fstore_view_partitions_behind", "Partitions with events not yet acked.", []string{"view"}, nil),
		failing: prometheus.NewDesc("fstore_view_partitions_failing", "Partitions whose next event failed and has not been delivered since (parked ones included).", []string{"view"}, nil),
	})
}

func (c *viewCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.parked
	ch <- c.behind
	ch <- c.failing
}

func (c *viewCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	views, err := c.views.ListViews(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.pending, err)
		return
	}
	for _, v := range views {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(v.Status.EventsPending), v.View)
		ch <- prometheus.MustNewConstMetric(c.parked, prometheus.GaugeValue, float64(v.Status.PartitionsParked), v.View)
		ch <- prometheus.MustNewConstMetric(c.behind, prometheus.GaugeValue, float64(v.Status.PartitionsBehind), v.View)
		ch <- prometheus.MustNewConstMetric(c.failing, prometheus.GaugeValue, float64(v.Status.PartitionsFailing), v.View)
	}
}
