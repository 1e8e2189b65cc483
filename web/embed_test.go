package web_test

import (
	"io/fs"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/web"
)

// The embedded console is whole and within its budget: the page names only
// files that are there, and nothing outside this origin.
func TestConsoleIsEmbeddedWhole(t *testing.T) {
	page, err := fs.ReadFile(web.Console, "index.html")
	require.NoError(t, err, "build the console: make console")
	total := 0
	require.NoError(t, fs.WalkDir(web.Console, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			info, _ := d.Info()
			total += int(info.Size())
		}
		return err
	}))
	assert.Less(t, total, 200*1024, "the console's budget is 200 KB")
	refs := regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllStringSubmatch(string(page), -1)
	require.NotEmpty(t, refs)
	for _, m := range refs {
		ref := m[1]
		if ref == "/docs/" {
			continue // the API's own Swagger UI
		}
		assert.NotRegexp(t, `^[a-z]+:|^//`, ref, "the console fetches nothing from elsewhere")
		_, err := fs.Stat(web.Console, ref)
		assert.NoError(t, err, "index.html names %s", ref)
	}
}
