package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// cpuMeter sums the CPU time (user and system) of one API process and of
// the bench's PostgreSQL (its postmaster's processes): a cost per operation
// that other load on a shared machine moves far less than a rate.
type cpuMeter struct {
	procs      []int
	postmaster int
}

// newCPUMeter meters procs (fstore processes) and the server of dbURL, when
// that server is the throwaway cluster of scripts/pg.sh (its socket folder
// holds its data); otherwise only procs.
func newCPUMeter(dbURL string, procs ...*apiProcess) cpuMeter {
	var m cpuMeter
	for _, p := range procs {
		m.procs = append(m.procs, p.cmd.Process.Pid)
	}
	if cfg, err := pgconn.ParseConfig(dbURL); err == nil {
		if b, err := os.ReadFile(filepath.Join(cfg.Host, "data", "postmaster.pid")); err == nil {
			m.postmaster, _ = strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
		}
	}
	return m
}

// total is the CPU time used so far by the processes and the server's
// processes alive now (pooled connections live as long as their process).
func (m cpuMeter) total() time.Duration {
	pids := append([]int(nil), m.procs...)
	if m.postmaster > 0 {
		pids = append(pids, m.postmaster)
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if pid, err := strconv.Atoi(e.Name()); err == nil && parentOf(pid) == m.postmaster {
				pids = append(pids, pid)
			}
		}
	}
	var ticks int64
	for _, pid := range pids {
		ticks += cpuTicks(pid)
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// statFields are a process's /proc stat fields after its command name.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
}

func parentOf(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// cpuTicks is utime + stime (fields 14 and 15 of stat; 12 and 13 here).
func cpuTicks(pid int) int64 {
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// perOp is d spread over n operations, in microseconds.
func perOp(d time.Duration, n int64) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(n)
}
