// Package netguard decides which addresses fstore sends webhooks to. The
// dispatcher checks every address it dials, after DNS; the API checks the
// literal host of an edge_function_url when a view is registered, so that a
// URL the dispatcher would never reach is refused at once, with the reason.
// It is a package of its own because both use it and the API must not
// import the dispatcher.
package netguard

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// ErrForbidden: fstore does not deliver to this address.
var ErrForbidden = errors.New("forbidden address")

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

// Check returns ErrForbidden (wrapped, with the reason) when ip may not be
// dialled: a cloud metadata service always, loopback and private ranges
// unless allowPrivate (FSTORE_ALLOW_PRIVATE_URLS).
func Check(ip netip.Addr, allowPrivate bool) error {
	ip = ip.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	for _, p := range metadataAddrs {
		if p.Contains(ip) {
			return fmt.Errorf("%w: %s is a cloud metadata service", ErrForbidden, ip)
		}
	}
	if allowPrivate {
		return nil
	}
	for _, p := range privateAddrs {
		if p.Contains(ip) {
			return fmt.Errorf("%w: %s is not a public address (set FSTORE_ALLOW_PRIVATE_URLS=true to allow it)", ErrForbidden, ip)
		}
	}
	return nil
}

// CheckURL returns why a webhook URL can never be delivered to, or nil. It
// must be an absolute http or https URL without user-info (credentials
// belong in the receiver's checks of the signature, never in a URL that
// answers and logs would show), and a host given as a literal address (or
// localhost, which is always loopback) must pass Check. The message never
// repeats the URL, so it cannot echo credentials.
func CheckURL(raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an absolute http or https URL")
	}
	if u.User != nil {
		return errors.New("must not carry user-info (user:password@): the receiver checks the webhook signature instead")
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return nil //nolint:nilerr // a name: the dispatcher checks what it resolves to
	}
	if err := Check(ip, allowPrivate); err != nil {
		return fmt.Errorf("the dispatcher never delivers there: %w", err)
	}
	return nil
}
