package netguard_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fstore/fstore/internal/netguard"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string][2]bool{ // refused: strict, allowing private
		"169.254.169.254": {true, true},
		"fd00:ec2::254":   {true, true},
		"127.0.0.1":       {true, false},
		"::ffff:10.0.0.1": {true, false},
		"192.168.1.1":     {true, false},
		"93.184.216.34":   {false, false},
		"2606:4700::1111": {false, false},
	} {
		ip := netip.MustParseAddr(addr)
		for i, allow := range []bool{false, true} {
			err := netguard.Check(ip, allow)
			assert.Equal(t, want[i], err != nil, "%s, allowPrivate %v: %v", addr, allow, err)
			if err != nil {
				assert.True(t, errors.Is(err, netguard.ErrForbidden))
			}
		}
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	for raw, refused := range map[string]bool{
		"https://hooks.example/x":                 false,
		"https://hooks.example:8443/x?k=v":        false,
		"http://localhost:8090/hook":              true,
		"http://api.localhost./hook":              true,
		"http://[::1]:80/":                        true,
		"http://0x7f000001/":                      false, // not a literal address: the dialler checks what it resolves to
		"https://user:pw@hooks.example/x":         true,
		"https://user@hooks.example/x":            true,
		"ftp://hooks.example/x":                   true,
		"/relative":                               true,
		"http://169.254.169.254/latest/meta-data": true,
	} {
		err := netguard.CheckURL(raw, false)
		assert.Equal(t, refused, err != nil, "%s: %v", raw, err)
		if err != nil {
			assert.NotContains(t, err.Error(), "pw@", "no credentials in the message")
		}
	}
	assert.NoError(t, netguard.CheckURL("http://127.0.0.1:8090/hook", true), "private allowed")
	assert.Error(t, netguard.CheckURL("http://169.254.169.254/", true), "metadata never")
}
