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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
	fstoresql "github.com/fstore/fstore/sql"
)

// PostgreSQL stops and starts again while the dispatcher delivers: it
// reconnects by itself and every event is delivered, in order per partition.
func TestDispatcherSurvivesDatabaseRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level fault test")
	}
	ctx := context.Background()
	cluster := storetest.NewCluster(t) // our own, so that the test may stop it
	dbURL := cluster.URL

	var mu sync.Mutex
	received := map[string][]int64{}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var e store.Event
		_ = json.Unmarshal(body, &e)
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		received[e.DeciderID] = append(received[e.DeciderID], e.Offset)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()

	st, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	_, err = st.Migrate(ctx, fstoresql.Migrations)
	require.NoError(t, err)
	_, _, err = st.RegisterEventType(ctx, store.EventType{Decider: "order", Event: "created", EventVersion: 1})
	require.NoError(t, err)
	start := time.Now().Add(-time.Hour)
	_, _, err = st.RegisterView(ctx, store.ViewRegistration{View: "hooks", StartAt: &start, LockTimeoutS: 60, EdgeFunctionURL: &rcv.URL})
	require.NoError(t, err)
	want := map[string][]int64{}
	for p := range 5 {
		id := fmt.Sprint("p", p)
		var prev *uuid.UUID
		for range 40 {
			e := store.NewEvent{Event: "created", EventID: uuid.New(), EventVersion: 1, Decider: "order", DeciderID: id,
				Data: json.RawMessage(`{}`), CommandID: uuid.New(), PreviousID: prev}
			res, err := st.AppendEvents(ctx, []store.NewEvent{e})
			require.NoError(t, err)
			prev = &e.EventID
			want[id] = append(want[id], res.Events[0].Offset)
		}
	}
	st.Close()

	bin := filepath.Join(t.TempDir(), "fstore-dispatcher")
	require.NoError(t, exec.Command("go", "build", "-o", bin, ".").Run())
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "FSTORE_METRICS_ADDR=127.0.0.1:0",
		"FSTORE_ALLOW_PRIVATE_URLS=true", "FSTORE_DISPATCH_TIMEOUT=1s", "FSTORE_LOG_LEVEL=error")
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	delivered := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for id := range want {
			n += len(unique(received[id]))
		}
		return n
	}
	waitUntil(t, "deliveries", func() bool { return delivered() >= 30 })
	cluster.Stop()
	time.Sleep(2 * time.Second) // the outage
	cluster.Start()
	waitUntil(t, "every event delivered after the restart", func() bool { return delivered() == 200 })
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())

	mu.Lock()
	defer mu.Unlock()
	checkDeliveries(t, want, received, 1)
}
