package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
	"github.com/fstore/fstore/internal/store"
)

// A client that stops reading is ended with a final frame once more than
// store.MaxBehind events wait for it, without holding up anyone; it
// follows again with Last-Event-ID from that frame's after and misses
// nothing. Its socket's receive buffer is kept small so that the kernel's
// buffers do not absorb the backlog; its write timeout is long, so that it
// is not cut off before it reads again, however slow the appends.
func TestFollowSlowClientIsEndedAndResumes(t *testing.T) {
	t.Parallel()
	a, _ := newLiveAPI(t, httpapi.Options{Heartbeat: time.Hour, LiveWriteTimeout: 10 * time.Minute}, nil)
	a.register("order", "created")
	small := smallBufferClient()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	openSSE := func(lastID string) *bufio.Reader {
		req, err := http.NewRequestWithContext(ctx, "GET", a.srv.URL+"/v1/events", nil)
		require.NoError(t, err)
		req.Header.Set("Accept", acceptSSE)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := small.Do(req)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		t.Cleanup(func() { resp.Body.Close() })
		return bufio.NewReader(resp.Body)
	}
	slow := openSSE("")
	st := &stream{t: t, rd: slow}
	_, ok := st.frame() // the retry hint: the follow is under way
	require.True(t, ok)
	keeping := a.get("/v1/events", acceptNDJSON)
	const total = 30000
	lastKept := make(chan float64, 1)
	go func() { // a client that keeps up, meanwhile
		var last float64
		for range total {
			raw, v, ok := keeping.line()
			if !ok || v["offset"] == nil {
				t.Errorf("the client keeping up got %s", raw)
				break
			}
			last = v["offset"].(float64)
		}
		lastKept <- last
	}()

	for range total / 1000 {
		batch := make([]map[string]any, 1000)
		for i := range batch {
			batch[i] = event("order", uuid.NewString(), "")
		}
		r := a.do("POST", "/v1/events/batch", map[string]any{"events": batch})
		require.Equal(t, 201, r.Status, "%s", r.Raw)
	}
	last := <-lastKept

	// The slow client reads now: what was sent, then why it ended.
	var offsets []int64
	var final map[string]any
	for final == nil {
		f, ok := st.frame()
		require.True(t, ok, "the stream ended without a final frame")
		switch {
		case f.Event == "error":
			require.NoError(t, json.Unmarshal([]byte(f.Data), &final))
		case f.ID != "":
			n, err := strconv.ParseInt(f.ID, 10, 64)
			require.NoError(t, err)
			offsets = append(offsets, n)
		}
	}
	assert.Equal(t, httpapi.ProblemTypePrefix+"subscriber-too-slow", final["type"])
	require.Less(t, len(offsets), total-store.MaxBehind, "it was ended, not served everything")
	assert.EqualValues(t, offsets[len(offsets)-1], final["after"])

	resumed := &stream{t: t, rd: openSSE(strconv.FormatInt(int64(final["after"].(float64)), 10))}
	for offsets[len(offsets)-1] < int64(last) {
		n, err := strconv.ParseInt(resumed.event().ID, 10, 64)
		require.NoError(t, err)
		offsets = append(offsets, n)
	}
	assert.Len(t, offsets, total, "every event once")
	for i := 1; i < len(offsets); i++ {
		require.Greater(t, offsets[i], offsets[i-1], "in offset order")
	}
}

// smallBufferClient's connections have a receive buffer of 16 KiB: a client
// that stops reading soon blocks the server's writes.
func smallBufferClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		Control: func(_, _ string, c syscall.RawConn) error {
			var err error
			if cerr := c.Control(func(fd uintptr) {
				err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
			}); cerr != nil {
				return cerr
			}
			return err
		}}).DialContext}}
}

// A client that stops reading altogether is cut off once a write has waited
// LiveWriteTimeout: its place among MaxSubscribers is freed.
func TestFollowStuckClientIsCutOff(t *testing.T) {
	t.Parallel()
	a, _ := newLiveAPI(t, httpapi.Options{MaxSubscribers: 1, LiveWriteTimeout: time.Second}, nil)
	a.register("order", "created")
	req, err := http.NewRequestWithContext(t.Context(), "GET", a.srv.URL+"/v1/events", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", acceptNDJSON)
	resp, err := smallBufferClient().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close() // and never read
	require.Equal(t, 200, resp.StatusCode)
	_, r := a.open("GET", "/v1/events", acceptSSE, nil)
	requireProblem(t, r, 503, "too-many-subscribers")

	deadline := time.Now().Add(2 * time.Minute)
	for {
		batch := make([]map[string]any, 1000)
		for i := range batch {
			batch[i] = event("order", uuid.NewString(), "")
		}
		require.Equal(t, 201, a.do("POST", "/v1/events/batch", map[string]any{"events": batch}).Status)
		if st, _ := a.open("GET", "/v1/events?after=999999999", acceptSSE, nil); st != nil {
			return // the stuck client's place was freed
		}
		require.True(t, time.Now().Before(deadline), "the stuck client was never cut off")
	}
}
