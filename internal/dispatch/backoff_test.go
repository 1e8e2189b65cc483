package dispatch_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/fstore/fstore/internal/dispatch"
)

func TestBackoffGrowsWithJitterWithinBounds(t *testing.T) {
	b := dispatch.Backoff{Base: time.Second, Max: time.Hour}
	for n := 1; n <= 100; n++ {
		want := time.Hour
		if n <= 12 {
			want = min(time.Hour, time.Second<<(n-1))
		}
		for range 50 {
			d := b.Delay(n)
			assert.GreaterOrEqual(t, d, want/2, "attempt %d", n)
			assert.LessOrEqual(t, d, want, "attempt %d", n)
		}
	}
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[b.Delay(10)] = true
	}
	assert.Greater(t, len(seen), 1, "jittered")
	assert.LessOrEqual(t, dispatch.Backoff{}.Delay(1000), 6*time.Hour, "defaults cap at 6 h")
	assert.GreaterOrEqual(t, dispatch.Backoff{}.Delay(0), 500*time.Millisecond)
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	lo, hi := time.Second, time.Hour
	for name, tc := range map[string]struct {
		value string
		want  time.Duration
		ok    bool
	}{
		"seconds":         {"30", 30 * time.Second, true},
		"below the floor": {"0", time.Second, true},
		"above the cap":   {"999999999999", time.Hour, true},
		"http date":       {now.Add(2 * time.Minute).Format(http.TimeFormat), 2 * time.Minute, true},
		"date in past":    {now.Add(-time.Minute).Format(http.TimeFormat), time.Second, true},
		"absent":          {"", 0, false},
		"garbage":         {"soon", 0, false},
		"negative":        {"-5", 0, false},
	} {
		h := http.Header{}
		if tc.value != "" {
			h.Set("Retry-After", tc.value)
		}
		d, ok := dispatch.RetryAfter(h, now, lo, hi)
		assert.Equal(t, tc.ok, ok, name)
		assert.Equal(t, tc.want, d, name)
	}
}
