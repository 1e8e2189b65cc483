package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// apiProcess is a real fstore binary, started for the benchmark.
type apiProcess struct {
	cmd  *exec.Cmd
	base string
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startAPI(ctx context.Context, bin, dbURL string, env ...string) (*apiProcess, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	// Views push to a receiver on loopback, which registration refuses otherwise.
	return startProcess(ctx, bin, "/readyz", addr, append([]string{"DATABASE_URL=" + dbURL, "FSTORE_ADDR=" + addr,
		"FSTORE_LOG_LEVEL=warn", "FSTORE_PPROF_ADDR=" + os.Getenv("FSTORE_BENCH_PPROF"), "FSTORE_ALLOW_PRIVATE_URLS=true"}, env...)...)
}

// startDispatcher starts the dispatcher binary, allowed to push to
// loopback, with extra settings in env.
func startDispatcher(ctx context.Context, bin, dbURL string, env ...string) (*apiProcess, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return startProcess(ctx, bin, "/healthz", addr, append([]string{"DATABASE_URL=" + dbURL, "FSTORE_METRICS_ADDR=" + addr,
		"FSTORE_ALLOW_PRIVATE_URLS=true", "FSTORE_LOG_LEVEL=warn"}, env...)...)
}

// startProcess starts bin with env and waits until GET addr+ready answers 200.
func startProcess(ctx context.Context, bin, ready, addr string, env ...string) (*apiProcess, error) {
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &apiProcess{cmd: cmd, base: "http://" + addr}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(p.base + ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
	}
	p.stop()
	return nil, fmt.Errorf("%s did not become ready at %s", bin, p.base)
}

// peakRSS returns the process's peak resident memory (VmHWM) in MiB.
func (p *apiProcess) peakRSS() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

func (p *apiProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
	}
}
