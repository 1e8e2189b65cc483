package main

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store/storetest"
)

// SIGTERM ends every live follow at once with a final frame saying so, and
// the API exits cleanly: its shutdown does not wait for them.
func TestSIGTERMEndsFollows(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test")
	}
	dbURL := storetest.NewDatabase(t)
	api, addr := startAPIProcess(t, dbURL, "FSTORE_SHUTDOWN_TIMEOUT=60s")
	base := "http://" + addr

	const followers = 20
	finals := make([]string, followers)
	var connected, done sync.WaitGroup
	connected.Add(followers)
	for k := range followers {
		req, err := http.NewRequest("GET", base+"/v1/events", nil)
		require.NoError(t, err)
		req.Header.Set("Accept", []string{"text/event-stream", "application/x-ndjson"}[k%2])
		done.Go(func() {
			resp, err := http.DefaultClient.Do(req)
			connected.Done()
			if !assert.NoError(t, err) {
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if line := sc.Text(); strings.HasPrefix(line, "data: ") || strings.HasPrefix(line, `{"error"`) {
					finals[k] = line // the last such line
				}
			}
		})
	}
	connected.Wait() // each answered 200: its follow is under way
	requireCleanStop(t, api, 50*time.Second, "the shutdown did not wait out its timeout for the follows")
	done.Wait()
	for k, line := range finals {
		var frame struct {
			Type  string
			Error struct{ Type string }
		}
		require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &frame), "follower %d: %q", k, line)
		assert.Equal(t, "urn:fstore:problem:shutting-down", frame.Type+frame.Error.Type, "follower %d", k)
	}
}

// A follower that stopped reading does not hold up a SIGTERM: its blocked
// write is cut short, and the API exits cleanly well within its shutdown
// timeout, which is shorter than a live write's own timeout (30 s).
func TestSIGTERMWithAFollowerThatStoppedReading(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test")
	}
	dbURL := storetest.NewDatabase(t)
	api, addr := startAPIProcess(t, dbURL, "FSTORE_SHUTDOWN_TIMEOUT=10s")

	// About 20 MB of events: far more than the sockets' buffers hold.
	conn, err := pgx.Connect(t.Context(), dbURL)
	require.NoError(t, err)
	_, err = conn.Exec(t.Context(), `SELECT register_decider_event('stuck', 'filled', '')`)
	require.NoError(t, err)
	_, err = conn.Exec(t.Context(), `INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
		SELECT 'filled', gen_random_uuid(), 'stuck', 's-' || i, jsonb_build_object('pad', repeat('x', 1000)),
		       gen_random_uuid(), NULL FROM generate_series(1, 20000) i`)
	require.NoError(t, err)
	require.NoError(t, conn.Close(t.Context()))

	// A raw client: it sends its request, reads the status line, and then
	// nothing more.
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("GET /v1/events HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n\r\n"))
	require.NoError(t, err)
	status, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, status, "200")
	time.Sleep(2 * time.Second) // its writes fill the sockets' buffers and block

	requireCleanStop(t, api, 40*time.Second, "the stuck write did not outlast the shutdown timeout")
}

// startAPIProcess builds the API and starts it on dbURL at a free port with
// env added, killed at the end of the test; it returns once it is ready.
func startAPIProcess(t *testing.T, dbURL string, env ...string) (*exec.Cmd, string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fstore-api")
	require.NoError(t, exec.Command("go", "build", "-o", bin, ".").Run())
	addr := "127.0.0.1:" + freePort(t)
	api := exec.Command(bin)
	api.Env = append(append(os.Environ(), "DATABASE_URL="+dbURL, "FSTORE_ADDR="+addr, "FSTORE_LOG_LEVEL=error"), env...)
	api.Stderr = os.Stderr
	require.NoError(t, api.Start())
	t.Cleanup(func() { _ = api.Process.Kill(); _ = api.Wait() })
	waitReady(t, http.DefaultClient, "http://"+addr)
	return api, addr
}

// requireCleanStop sends SIGTERM to cmd and requires it to exit 0 within d.
func requireCleanStop(t *testing.T, cmd *exec.Cmd, d time.Duration, why string) {
	t.Helper()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		require.NoError(t, err, "a clean exit: "+why)
	case <-time.After(d):
		t.Fatalf("the process did not stop within %s", d)
	}
}
