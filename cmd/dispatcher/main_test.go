package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// The dispatcher is killed (-9) repeatedly in the middle of deliveries:
// after the last restart every event has been delivered at least once, each
// partition's pushes went forward one event at a time (never skipping one),
// and only a crash made a partition start again from its last acked event,
// less than one lease batch back.
func TestKilledDispatcherDeliversEverythingInOrder(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fstore-dispatcher")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	ctx := context.Background()
	st := storetest.NewStore(t)
	var mu sync.Mutex
	received := map[string][]int64{}
	total := 0
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var e store.Event
		_ = json.Unmarshal(body, &e)
		select { // deliveries take a while: some are in flight at each kill
		case <-time.After(15 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		mu.Lock()
		received[e.DeciderID] = append(received[e.DeciderID], e.Offset)
		total++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()

	_, _, err := st.RegisterEventType(ctx, store.EventType{Decider: "order", Event: "created", EventVersion: 1})
	require.NoError(t, err)
	start := time.Now().Add(-time.Hour)
	_, _, err = st.RegisterView(ctx, store.ViewRegistration{View: "hooks", StartAt: &start, LockTimeoutS: 60, EdgeFunctionURL: &rcv.URL})
	require.NoError(t, err)
	want := map[string][]int64{}
	const partitions, perPartition = 5, 30
	for p := range partitions {
		id := fmt.Sprint("p", p)
		var prev *uuid.UUID
		for range perPartition {
			e := store.NewEvent{Event: "created", EventID: uuid.New(), EventVersion: 1, Decider: "order", DeciderID: id,
				Data: json.RawMessage(`{}`), CommandID: uuid.New(), PreviousID: prev}
			res, err := st.AppendEvents(ctx, []store.NewEvent{e})
			require.NoError(t, err)
			prev = &e.EventID
			want[id] = append(want[id], res.Events[0].Offset)
		}
	}

	env := append(os.Environ(), "DATABASE_URL="+storetest.URL(t, st), "FSTORE_METRICS_ADDR=127.0.0.1:0",
		"FSTORE_ALLOW_PRIVATE_URLS=true", "FSTORE_DISPATCH_TIMEOUT=1s", "FSTORE_LOG_LEVEL=warn")
	startDispatcher := func() *exec.Cmd {
		cmd := exec.Command(bin)
		cmd.Env = env
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		return cmd
	}
	delivered := func() int { mu.Lock(); defer mu.Unlock(); return total }

	for kill := 1; kill <= 3; kill++ {
		cmd := startDispatcher()
		before := delivered()
		waitUntil(t, "deliveries", func() bool { return delivered() >= before+15 })
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
	}
	cmd := startDispatcher()
	waitUntil(t, "every event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for id, offs := range want {
			if len(unique(received[id])) < len(offs) {
				return false
			}
		}
		return true
	})
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "a clean stop on SIGTERM")

	mu.Lock()
	defer mu.Unlock()
	const kills = 3
	checkDeliveries(t, want, received, kills)
	t.Logf("%d deliveries for %d events over %d kills", total, partitions*perPartition, kills)
}

// checkDeliveries requires every event of want delivered, each partition
// going forward one event at a time (never skipping one), and going back
// (a replay from its last ack) at most restarts times, by less than a batch.
func checkDeliveries(t *testing.T, want, received map[string][]int64, restarts int) {
	t.Helper()
	const batch = 10
	for id, offs := range want {
		index := map[int64]int{}
		for i, o := range offs {
			index[o] = i
		}
		got := received[id]
		seen := map[int64]bool{}
		back := 0
		for i, o := range got {
			seen[o] = true
			if i == 0 {
				assert.Equal(t, 0, index[o], "partition %s starts at its first event", id)
				continue
			}
			prev, cur := index[got[i-1]], index[o]
			switch {
			case cur == prev+1: // the next event
			case cur <= prev: // a replay from the last ack
				back++
				assert.Less(t, prev-cur, batch, "partition %s went back more than a batch: %v", id, got)
			default:
				t.Errorf("partition %s skipped from %d to %d: %v", id, got[i-1], o, got)
			}
		}
		assert.LessOrEqual(t, back, restarts, "partition %s went back without a restart: %v", id, got)
		assert.Len(t, seen, len(offs), "partition %s: every event at least once", id)
	}
}

func unique(offs []int64) []int64 {
	seen := map[int64]bool{}
	var out []int64
	for _, o := range offs {
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// waitUntil polls cond until it holds, failing the test after 90 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(90 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
	}
}
