package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// Followers connecting over HTTP at staggered moments, SSE and NDJSON,
// from the start or from an event's offset, while clients append through
// the API and another process appends on its own connection: each gets
// every event above its cursor exactly once, in offset order.
func TestFollowersJoiningDuringAppends(t *testing.T) {
	t.Parallel()
	a, _, st := newLiveAPIStore(t, httpapi.Options{}, nil)
	a.register("order", "created")
	other := storetest.NewStoreOn(t, st) // another API process

	var appended atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			prev := ""
			for range 100 {
				r := a.do("POST", "/v1/events", event("order", fmt.Sprintf("w%d", w), prev))
				if !assert.Equal(t, 201, r.Status, "%s", r.Raw) {
					return
				}
				prev = r.Body["event_id"].(string)
				appended.Add(1)
			}
		})
	}
	wg.Go(func() {
		for i := range 100 {
			e := store.NewEvent{Event: "created", EventID: uuid.New(), EventVersion: 1, Decider: "order",
				DeciderID: fmt.Sprint("other-", i), Data: json.RawMessage(`{"n": 1}`), CommandID: uuid.New()}
			if _, err := other.AppendEvents(t.Context(), []store.NewEvent{e}); !assert.NoError(t, err) {
				return
			}
			appended.Add(1)
		}
	})

	const followers = 12
	got := make([][]int64, followers)
	afters := make([]int64, followers)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var mu sync.Mutex
	var fwg sync.WaitGroup
	for k := range followers {
		fwg.Go(func() {
			for appended.Load() < int64(k*35) {
				time.Sleep(time.Millisecond)
			}
			path := "/v1/events"
			if k%3 == 2 {
				if evs := a.rawEvents("/v1/events?limit=10000"); len(evs) > 0 {
					var e struct{ Offset int64 }
					assert.NoError(t, json.Unmarshal(evs[rand.IntN(len(evs))], &e))
					afters[k] = e.Offset
					path += "?after=" + strconv.FormatInt(e.Offset, 10)
				}
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", a.srv.URL+path, nil)
			req.Header.Set("Accept", []string{acceptSSE, acceptNDJSON}[k%2])
			resp, err := http.DefaultClient.Do(req)
			if !assert.NoError(t, err) || !assert.Equal(t, 200, resp.StatusCode) {
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				line := sc.Text()
				var offset int64
				if id, ok := strings.CutPrefix(line, "id: "); ok { // SSE
					offset, err = strconv.ParseInt(id, 10, 64)
				} else if strings.HasPrefix(line, `{"event"`) { // NDJSON
					var e struct{ Offset int64 }
					err = json.Unmarshal([]byte(line), &e)
					offset = e.Offset
				} else {
					continue
				}
				assert.NoError(t, err)
				mu.Lock()
				got[k] = append(got[k], offset)
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	var all []int64
	for _, raw := range a.rawEvents("/v1/events?limit=10000") {
		var e struct{ Offset int64 }
		require.NoError(t, json.Unmarshal(raw, &e))
		all = append(all, e.Offset)
	}
	require.Len(t, all, 500)
	deadline := time.Now().Add(60 * time.Second)
	for k := range followers {
		var want []int64
		for _, o := range all {
			if o > afters[k] {
				want = append(want, o)
			}
		}
		for {
			mu.Lock()
			n := len(got[k])
			mu.Unlock()
			if n >= len(want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		assert.Equal(t, want, got[k], "follower %d (after %d)", k, afters[k])
		mu.Unlock()
	}
	stop()
	fwg.Wait()
}
