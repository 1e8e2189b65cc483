package dispatch

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/fstore/fstore/internal/netguard"
)

// ErrForbiddenAddress: the dispatcher refuses to connect to this address.
var ErrForbiddenAddress = netguard.ErrForbidden

// Guard decides which addresses the dispatcher may connect to. It checks
// the address actually dialled, after DNS, so a name that resolves to a
// private address is refused as the address itself would be.
type Guard struct {
	// AllowPrivate lets deliveries reach loopback and private addresses
	// (FSTORE_ALLOW_PRIVATE_URLS). Metadata services stay refused.
	AllowPrivate bool
}

// Check returns ErrForbiddenAddress (wrapped) when ip may not be dialled.
func (g Guard) Check(ip netip.Addr) error { return netguard.Check(ip, g.AllowPrivate) }

// control is a net.Dialer Control: it runs after DNS, before the connect
// system call, so a refused address never sees a packet.
func (g Guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrForbiddenAddress, address)
	}
	return g.Check(ap.Addr())
}

// NewClient returns an HTTP client for deliveries: every connection checked
// by g, http and https only, no redirects followed (a 3xx is the answer),
// no proxy from the environment, and timeout per attempt.
func NewClient(g Guard, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: g.control}
	transport := &http.Transport{
		DialContext:           dialer.DialContext,
		Proxy:                 nil,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport: schemeCheck{transport},
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// schemeCheck refuses any scheme but http and https.
type schemeCheck struct{ next http.RoundTripper }

func (s schemeCheck) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "http" && r.URL.Scheme != "https" {
		return nil, fmt.Errorf("%w: scheme %q (http and https only)", ErrForbiddenAddress, r.URL.Scheme)
	}
	return s.next.RoundTrip(r)
}
