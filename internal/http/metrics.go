package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpMetrics counts requests by route pattern (not by path: paths hold
// names and ids), method and status, and times them.
type httpMetrics struct {
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	subscribers prometheus.Gauge
	handler     http.Handler
}

// standbyReads is what a store with a read standby reports of it.
type standbyReads interface {
	ReplicaReads() (served, missed int64)
}

func newHTTPMetrics(st Store) *httpMetrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if sr, ok := st.(standbyReads); ok {
		// Projection reads the standby served, and those it could not
		// (down, or behind every sampled horizon) that the primary served.
		for outcome, pick := range map[string]func(served, missed int64) int64{
			"served": func(s, _ int64) int64 { return s }, "missed": func(_, m int64) int64 { return m },
		} {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "fstore_standby_reads_total", Help: "Projection reads sent to the read standby, by outcome.",
				ConstLabels: prometheus.Labels{"outcome": outcome},
			}, func() float64 { return float64(pick(sr.ReplicaReads())) }))
		}
	}
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fstore_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fstore_http_request_duration_seconds", Help: "HTTP request duration by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}, []string{"route", "method"}),
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fstore_live_subscribers", Help: "Live followers connected now (FSTORE_MAX_SUBSCRIBERS bounds them).",
		}),
	}
	reg.MustRegister(m.requests, m.latency, m.subscribers)
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return m
}

func (m *httpMetrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		m.requests.WithLabelValues(route, r.Method, strconv.Itoa(status)).Inc()
		m.latency.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
	})
}
