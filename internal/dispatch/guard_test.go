package dispatch_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/dispatch"
)

func TestGuardRanges(t *testing.T) {
	strict, lax := dispatch.Guard{}, dispatch.Guard{AllowPrivate: true}
	for _, tc := range []struct {
		ip            string
		strict, loose bool // allowed by the strict guard, by the one allowing private addresses
	}{
		{"93.184.216.34", true, true},
		{"2606:2800:220:1:248:1893:25c8:1946", true, true},
		{"127.0.0.1", false, true},
		{"127.3.4.5", false, true},
		{"::1", false, true},
		{"::ffff:127.0.0.1", false, true}, // IPv4-mapped IPv6
		{"::ffff:10.1.2.3", false, true},
		{"10.0.0.1", false, true},
		{"172.16.5.4", false, true},
		{"172.31.255.255", false, true},
		{"172.32.0.1", true, true},
		{"192.168.1.1", false, true},
		{"100.64.0.1", false, true}, // CGNAT
		{"169.254.1.1", false, true},
		{"fe80::1", false, true},
		{"fd12:3456::1", false, true},
		{"224.0.0.1", false, true},
		{"ff02::1", false, true},
		{"0.0.0.0", false, true},
		{"255.255.255.255", false, true},
		{"64:ff9b::a00:1", false, true}, // NAT64 of 10.0.0.1
		{"169.254.169.254", false, false},
		{"::ffff:169.254.169.254", false, false},
		{"fd00:ec2::254", false, false},
		{"100.100.100.200", false, false},
		{"169.254.170.2", false, false},
	} {
		ip := netip.MustParseAddr(tc.ip)
		assert.Equal(t, tc.strict, strict.Check(ip) == nil, "strict %s", tc.ip)
		assert.Equal(t, tc.loose, lax.Check(ip) == nil, "allowing private %s", tc.ip)
	}
}

// The address actually dialled is checked: a name that resolves to
// loopback is refused like the address, before any connection.
func TestClientChecksTheDialledAddress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]

	strict := dispatch.NewClient(dispatch.Guard{}, 5*time.Second)
	for _, u := range []string{
		srv.URL,                                   // 127.0.0.1
		"http://localhost:" + port,                // a name resolving to loopback
		"http://[::ffff:127.0.0.1]:" + port,       // IPv4-mapped IPv6
		"http://[::1]:" + port,                    // IPv6 loopback
		"http://169.254.169.254/latest/meta-data", // refused before any packet is sent
	} {
		_, err := get(strict, u)
		assert.ErrorIs(t, err, dispatch.ErrForbiddenAddress, u)
	}

	lax := dispatch.NewClient(dispatch.Guard{AllowPrivate: true}, 5*time.Second)
	resp, err := get(lax, "http://localhost:"+port)
	require.NoError(t, err)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	resp, err = get(lax, srv.URL+"/redirect")
	require.NoError(t, err)
	assert.Equal(t, http.StatusFound, resp.StatusCode, "a redirect is the answer, not followed")
	_, err = get(lax, "http://169.254.169.254/latest/meta-data")
	assert.ErrorIs(t, err, dispatch.ErrForbiddenAddress, "metadata stays refused")
	_, err = get(lax, "ftp://localhost:"+port+"/x")
	assert.ErrorIs(t, err, dispatch.ErrForbiddenAddress, "http and https only")
}

func get(c *http.Client, u string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}
