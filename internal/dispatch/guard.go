package dispatch

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrForbiddenAddress: the dispatcher refuses to connect to this address.
var ErrForbiddenAddress = errors.New("forbidden address")

// Cloud metadata services: never reachable, whatever the configuration.
var metadataAddrs = []netip.Prefix{
	netip.MustParsePrefix("169.254.169.254/32"), // AWS, GCP, Azure, OpenStack…
	netip.MustParsePrefix("169.254.170.2/32"),   // AWS ECS task metadata
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud
	netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS over IPv6
}

// Addresses that are not the public internet: refused unless private
// addresses are allowed.
var privateAddrs = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this" network
	netip.MustParsePrefix("10.0.0.0/8"),      // private
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local
	netip.MustParsePrefix("172.16.0.0/12"),   // private
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("192.168.0.0/16"),  // private
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("::/128"),          // unspecified
	netip.MustParsePrefix("::1/128"),         // loopback
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: may reach any IPv4
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local NAT64
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: may embed any IPv4
	netip.MustParsePrefix("fc00::/7"),        // unique local
	netip.MustParsePrefix("fe80::/10"),       // link-local
	netip.MustParsePrefix("ff00::/8"),        // multicast
}

// Guard decides which addresses the dispatcher may connect to. It checks
// the address actually dialled, after DNS, so a name that resolves to a
// private address is refused as the address itself would be.
type Guard struct {
	// AllowPrivate lets deliveries reach loopback and private addresses
	// (FSTORE_ALLOW_PRIVATE_URLS). Metadata services stay refused.
	AllowPrivate bool
}

// Check returns ErrForbiddenAddress (wrapped) when ip may not be dialled.
func (g Guard) Check(ip netip.Addr) error {
	ip = ip.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	for _, p := range metadataAddrs {
		if p.Contains(ip) {
			return fmt.Errorf("%w: %s is a cloud metadata service", ErrForbiddenAddress, ip)
		}
	}
	if g.AllowPrivate {
		return nil
	}
	for _, p := range privateAddrs {
		if p.Contains(ip) {
			return fmt.Errorf("%w: %s is not a public address (set FSTORE_ALLOW_PRIVATE_URLS=true to allow it)", ErrForbiddenAddress, ip)
		}
	}
	return nil
}

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
