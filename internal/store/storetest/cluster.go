package storetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Cluster is a private PostgreSQL cluster, started with scripts/pg.sh, that
// a fault test may stop and start again. It is removed when the test ends.
type Cluster struct {
	t         testing.TB
	dir, port string
	// URL is the connection string of its database.
	URL string
}

// NewCluster starts a private cluster on a free loopback port.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	dir := tempDir(t, "fstore-fault-pg")
	c := &Cluster{t: t, dir: dir, port: freePort(t)}
	t.Cleanup(func() { _ = exec.Command(script("pg.sh"), "stop", dir).Run(); _ = os.RemoveAll(dir) })
	c.URL = c.pg("start", dir, c.port)
	return c
}

// Stop shuts the server down (its data stays).
func (c *Cluster) Stop() { c.pg("stop", c.dir) }

// Start starts it again on the same port.
func (c *Cluster) Start() { c.pg("start", c.dir, c.port) }

func (c *Cluster) pg(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(script("pg.sh"), args...)
	// A fault test kills processes, never the machine: durability to disk
	// buys it nothing. (Commits still wait for a synchronous standby.)
	cmd.Env = append(os.Environ(), "FSTORE_PG_OPTS=-c fsync=off -c full_page_writes=off")
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("pg.sh %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// script is the path of scripts/<name> of this module, found from this
// file's place.
func script(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", name)
}

// tempDir makes a folder that the unprivileged user pg.sh runs servers as
// (when the tests run as root) can reach.
func tempDir(t testing.TB, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
