package storetest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// PgBouncer is a real PgBouncer in transaction mode (scripts/pgbouncer.sh,
// which installs Debian's package when missing) in front of a PostgreSQL
// server, stopped when the test ends. Through it, every transaction may run
// on another server connection: session state does not survive.
type PgBouncer struct {
	// Addr is its loopback host:port.
	Addr string
}

// NewPgBouncer starts a PgBouncer on a free loopback port in front of the
// server of serverURL (any database URL of that server: TCP or unix socket).
func NewPgBouncer(t testing.TB, serverURL string) *PgBouncer {
	t.Helper()
	cfg, err := pgconn.ParseConfig(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	dir := tempDir(t, "fstore-pgbouncer")
	home := dir + "/pgbouncer"
	t.Cleanup(func() { _ = exec.Command(script("pgbouncer.sh"), "stop", home).Run(); _ = os.RemoveAll(dir) })
	out, err := exec.Command(script("pgbouncer.sh"), "start", home, freePort(t), cfg.Host, fmt.Sprint(cfg.Port)).Output()
	if err != nil {
		t.Fatalf("pgbouncer.sh start: %v", err)
	}
	return &PgBouncer{Addr: strings.TrimSpace(string(out))}
}

// URL returns the connection string of dbURL's database through the pooler.
func (b *PgBouncer) URL(t testing.TB, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Del("host")
	q.Del("port")
	u.Host, u.RawQuery = b.Addr, q.Encode()
	return u.String()
}

// freePort returns a loopback TCP port nobody listens on now.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
