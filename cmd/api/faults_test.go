package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
	fstoresql "github.com/fstore/fstore/sql"
)

// PostgreSQL stops and starts again while 8 clients append: the API answers
// 503 problem+json meanwhile (no hang, no crash, no other 5xx), recovers by
// itself, and every append that got a 2xx is readable afterwards.
func TestDatabaseRestartUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level fault test")
	}
	cluster := storetest.NewCluster(t) // our own, so that the test may stop it
	dbURL := cluster.URL

	bin := filepath.Join(t.TempDir(), "fstore-api")
	require.NoError(t, exec.Command("go", "build", "-o", bin, ".").Run())
	addr := "127.0.0.1:" + freePort(t)
	api := exec.Command(bin)
	api.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "FSTORE_ADDR="+addr, "FSTORE_LOG_LEVEL=error")
	api.Stderr = os.Stderr
	require.NoError(t, api.Start())
	t.Cleanup(func() { _ = api.Process.Kill(); _ = api.Wait() })
	base := "http://" + addr
	client := &http.Client{Timeout: 10 * time.Second} // a hang fails the test
	waitReady(t, client, base)
	post(t, client, base+"/v1/deciders/order/events", `{"event":"created"}`)

	var (
		mu       sync.Mutex
		accepted []string
		statuses = map[int]int{}
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				id := uuid.NewString()
				body := fmt.Sprintf(`{"event":"created","event_id":%q,"decider":"order","decider_id":"w%d-%d","data":{},"command_id":%q,"previous_id":null}`,
					id, w, i, id)
				resp, err := client.Post(base+"/v1/events", "application/json", strings.NewReader(body))
				if err != nil {
					t.Errorf("append: %v (the API must answer, not hang or drop)", err)
					return
				}
				ct := resp.Header.Get("Content-Type")
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				if resp.StatusCode == http.StatusCreated {
					accepted = append(accepted, id)
				}
				mu.Unlock()
				switch {
				case resp.StatusCode == http.StatusServiceUnavailable:
					assert.Equal(t, "application/problem+json", ct)
					time.Sleep(50 * time.Millisecond) // a client backing off as Retry-After asks
				case resp.StatusCode >= 500:
					t.Errorf("status %d during the outage", resp.StatusCode)
				}
			}
		})
	}
	time.Sleep(time.Second) // load before the outage
	cluster.Stop()
	time.Sleep(2 * time.Second) // the outage
	cluster.Start()
	waitReady(t, client, base)
	time.Sleep(time.Second) // load after recovery
	stop.Store(true)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("statuses %v; %d appends accepted", statuses, len(accepted))
	assert.Positive(t, statuses[http.StatusServiceUnavailable], "the outage was seen")
	assert.Positive(t, statuses[http.StatusCreated], "appends went through")
	assert.Zero(t, unreadable(t, client, base, accepted), "every append answered 201 is readable")
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func waitReady(t *testing.T, c *http.Client, base string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := c.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		require.True(t, time.Now().Before(deadline), "the API did not become ready")
	}
}

func post(t *testing.T, c *http.Client, url, body string) {
	t.Helper()
	resp, err := c.Post(url, "application/json", bytes.NewReader([]byte(body)))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Less(t, resp.StatusCode, 300, "%s", b)
}

// Four API processes start at once on an empty database: all become ready
// and every migration is applied exactly once.
func TestInstancesStartTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test")
	}
	dbURL := storetest.NewEmptyDatabase(t)
	bin := filepath.Join(t.TempDir(), "fstore-api")
	require.NoError(t, exec.Command("go", "build", "-o", bin, ".").Run())
	client := &http.Client{Timeout: 10 * time.Second}
	var bases []string
	for range 4 {
		addr := "127.0.0.1:" + freePort(t)
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "FSTORE_ADDR="+addr, "FSTORE_LOG_LEVEL=error")
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		bases = append(bases, "http://"+addr)
	}
	for _, base := range bases {
		waitReady(t, client, base)
	}
	conn, err := pgx.Connect(t.Context(), dbURL)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	var rows, distinct int
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*), count(DISTINCT version) FROM fstore_schema_migrations`).Scan(&rows, &distinct))
	assert.Equal(t, distinct, rows, "each migration recorded once")
	ms, err := store.LoadMigrations(fstoresql.Migrations)
	require.NoError(t, err)
	assert.Equal(t, len(ms), distinct, "every migration applied") // versions may have gaps
}

// SIGTERM while 8 clients append: the API finishes what it accepted and
// exits cleanly; every append answered 201 is readable afterwards. Requests
// sent after the listener closed fail to connect, as they should.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test")
	}
	dbURL := storetest.NewDatabase(t)
	bin := filepath.Join(t.TempDir(), "fstore-api")
	require.NoError(t, exec.Command("go", "build", "-o", bin, ".").Run())
	start := func() (*exec.Cmd, string) {
		addr := "127.0.0.1:" + freePort(t)
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "FSTORE_ADDR="+addr, "FSTORE_LOG_LEVEL=error")
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		return cmd, "http://" + addr
	}
	api, base := start()
	client := &http.Client{Timeout: 10 * time.Second}
	waitReady(t, client, base)
	post(t, client, base+"/v1/deciders/order/events", `{"event":"created"}`)

	var (
		mu       sync.Mutex
		accepted []string
		answered int
		refused  int
		stopping atomic.Bool
		wg       sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := uuid.NewString()
				body := fmt.Sprintf(`{"event":"created","event_id":%q,"decider":"order","decider_id":"g%d-%d","data":{},"command_id":%q,"previous_id":null}`,
					id, w, i, id)
				resp, err := client.Post(base+"/v1/events", "application/json", strings.NewReader(body))
				if err != nil {
					if !stopping.Load() {
						t.Errorf("append before shutdown: %v", err)
					}
					mu.Lock()
					refused++
					mu.Unlock()
					return // the listener is closed: this client is done
				}
				resp.Body.Close()
				mu.Lock()
				answered++
				if resp.StatusCode == http.StatusCreated {
					accepted = append(accepted, id)
				} else if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
					t.Errorf("status %d", resp.StatusCode)
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Second) // under load
	stopping.Store(true)
	requireCleanStop(t, api, 20*time.Second, "within its shutdown timeout")
	wg.Wait()

	// Read back through a fresh instance.
	api2, base2 := start()
	t.Cleanup(func() { _ = api2.Process.Kill(); _ = api2.Wait() })
	waitReady(t, client, base2)
	mu.Lock()
	defer mu.Unlock()
	missing := unreadable(t, client, base2, accepted)
	t.Logf("%d answered (%d accepted) before the shutdown, %d clients refused after it", answered, len(accepted), refused)
	assert.Positive(t, len(accepted))
	assert.Zero(t, missing, "every append answered 201 is stored")
}

// unreadable counts the events of ids that GET /v1/events/{id} does not find.
func unreadable(t *testing.T, c *http.Client, base string, ids []string) int {
	t.Helper()
	missing := 0
	for _, id := range ids {
		resp, err := c.Get(base + "/v1/events/" + id)
		require.NoError(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			missing++
		}
	}
	return missing
}
