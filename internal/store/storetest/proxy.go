package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// Proxy is a TCP proxy in front of a database, for tests of a connection
// lost in the middle of a request: the one fault a stopped server does not
// show, because PostgreSQL says goodbye before it stops.
type Proxy struct {
	// URL is the database's connection string through the proxy.
	URL string

	ln      net.Listener
	network string // of the server: "tcp" or "unix"
	addr    string
	mu      sync.Mutex
	cutOn   []byte // client bytes after which the server's answer is cut
	conns   []net.Conn
}

// NewProxy starts a proxy in front of the database at dbURL (a TCP or unix
// socket server), closed when the test ends.
func NewProxy(t testing.TB, dbURL string) *Proxy {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{network: "tcp", addr: net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))}
	if strings.HasPrefix(cfg.Host, "/") {
		p.network, p.addr = "unix", filepath.Join(cfg.Host, fmt.Sprintf(".s.PGSQL.%d", cfg.Port))
	}
	if p.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Del("host")
	q.Del("port")
	u.Host, u.RawQuery = p.ln.Addr().String(), q.Encode()
	p.URL = u.String()
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// CutAnswerTo makes the proxy cut the server's answer to the next request
// whose bytes contain sql: the client gets the first bytes of the answer,
// then the connection closes, as when the server dies mid-answer.
func (p *Proxy) CutAnswerTo(sql string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutOn = []byte(sql)
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := (&net.Dialer{}).DialContext(context.Background(), p.network, p.addr)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		cut := make(chan struct{}, 1)
		go p.forward(client, server, cut)
		go p.answer(server, client, cut)
	}
}

// forward copies the client's bytes to the server, and arms cut when they
// carry the SQL to cut the answer of.
func (p *Proxy) forward(client, server net.Conn, cut chan<- struct{}) {
	defer server.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if p.cutOn != nil && bytes.Contains(buf[:n], p.cutOn) {
				p.cutOn = nil
				cut <- struct{}{}
			}
			p.mu.Unlock()
			if _, werr := server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// answer copies the server's bytes to the client; once cut is armed, it
// passes 3 bytes of the next answer (part of a message header) and closes.
func (p *Proxy) answer(server, client net.Conn, cut <-chan struct{}) {
	defer client.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			select {
			case <-cut:
				_, _ = client.Write(buf[:min(n, 3)])
				server.Close()
				return
			default:
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				server.Close()
			}
			return
		}
	}
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}
