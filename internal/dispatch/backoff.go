package dispatch

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Backoff spaces the attempts of a failing partition: exponential from Base
// to Max, with jitter so that partitions that failed together do not retry
// together. Attempt n (from 1) waits a random time in [d/2, d], where
// d = min(Max, Base × 2^(n-1)).
type Backoff struct {
	Base time.Duration // default 1 s
	Max  time.Duration // default 6 h
}

// Delay returns the wait before retrying after the n-th failed attempt.
func (b Backoff) Delay(n int) time.Duration {
	base, ceiling := b.Base, b.Max
	if base <= 0 {
		base = time.Second
	}
	if ceiling <= 0 {
		ceiling = 6 * time.Hour
	}
	d := ceiling
	if n < 1 {
		n = 1
	}
	if n <= 62 && base < ceiling>>(n-1) {
		d = base << (n - 1)
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// RetryAfter reads a Retry-After header (seconds, or an HTTP date) and
// clamps it to [lo, hi]. ok is false when the header is absent or invalid.
func RetryAfter(h http.Header, now time.Time, lo, hi time.Duration) (d time.Duration, ok bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		d = time.Duration(min(secs, int64(hi/time.Second)+1)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, lo), hi), true
}
