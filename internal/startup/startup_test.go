package startup

import "testing"

// Connection strings are logged at start-up: passwords never are, whether
// in the authority, a parameter, or a multi-host URL.
func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@db:5432/fstore":                                    "postgres://u:xxxxx@db:5432/fstore",
		"postgres://u@db/fstore?password=secret":                                "postgres://u@db/fstore?password=xxxxx",
		"postgres://u:secret@h1:5432,h2:5432/f?target_session_attrs=read-write": "postgres://u:xxxxx@h1:5432,h2:5432/f?target_session_attrs=read-write",
		"host=db password=secret":                                               "(set, not a URL: hidden)",
		"":                                                                      "",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
