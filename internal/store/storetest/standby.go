package storetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Standby is a hot standby of a Cluster, made with pg_basebackup and fed by
// streaming replication (scripts/pg.sh standby), on a port of its own. It is
// removed when the test ends.
type Standby struct {
	Cluster
}

// NewStandby starts a hot standby of primary. With sync, the primary waits
// at every commit until the standby has the commit's WAL
// (synchronous_standby_names names it, synchronous_commit stays on).
func NewStandby(t testing.TB, primary *Cluster, sync bool) *Standby {
	t.Helper()
	dir := tempDir(t, "fstore-standby")
	s := &Standby{Cluster{t: t, dir: dir, port: freePort(t)}}
	t.Cleanup(func() { _ = exec.Command(script("pg.sh"), "stop", dir).Run(); _ = os.RemoveAll(dir) })
	args := []string{"standby", dir, primary.dir, s.port}
	if sync {
		args = append(args, "sync")
	}
	s.URL = s.pg(args...)
	return s
}

// Promote makes the standby a primary (pg_ctl promote), as a failover
// manager would once the primary is gone.
func (s *Standby) Promote() { s.pg("promote", s.dir) }

// Kill ends the server and all its processes with SIGKILL at once, the way
// a crashed machine ends them: nothing is flushed, nobody is told.
func (c *Cluster) Kill() {
	c.t.Helper()
	postmaster := c.postmaster()
	pids := append(childrenOf(postmaster), postmaster)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// StallReplication stops (SIGSTOP) the server's WAL senders: from now on
// its standbys receive nothing, as when the network to them stalls. Kill
// ends them like the rest.
func (c *Cluster) StallReplication() {
	c.t.Helper()
	stalled := 0
	for _, pid := range childrenOf(c.postmaster()) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.HasPrefix(string(cmdline), "postgres: walsender") {
			if err := syscall.Kill(pid, syscall.SIGSTOP); err == nil {
				stalled++
			}
		}
	}
	if stalled == 0 {
		c.t.Fatal("stall replication: no WAL sender runs")
	}
}

func (c *Cluster) postmaster() int {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, "data", "postmaster.pid"))
	if err != nil {
		c.t.Fatalf("no running server in %s: %v", c.dir, err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		c.t.Fatalf("postmaster.pid: %v", err)
	}
	return pid
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after ")".
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}
