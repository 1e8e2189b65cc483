// Command gen writes openapi/openapi.json and openapi/openapi.yaml from the
// swag annotations of internal/http: swag emits Swagger 2.0, kin-openapi's
// openapi2conv converts it to OpenAPI 3, and a few fixes make it say what
// swag cannot (problem+json error bodies, nullable fields).
//
// Run it from the module root: go run ./openapi/gen (or make openapi).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/swaggo/swag/gen"
	"sigs.k8s.io/yaml"
)

func main() {
	jsonDoc, yamlDoc, err := generate(".")
	if err != nil {
		log.Fatal(err)
	}
	for name, b := range map[string][]byte{"openapi/openapi.json": jsonDoc, "openapi/openapi.yaml": yamlDoc} {
		if err := os.WriteFile(name, b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// generate builds the document from the module rooted at root.
func generate(root string) (jsonDoc, yamlDoc []byte, err error) {
	tmp, err := os.MkdirTemp("", "fstore-openapi")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(tmp)

	wd, err := os.Getwd()
	if err != nil {
		return nil, nil, err
	}
	if err := os.Chdir(root); err != nil {
		return nil, nil, err
	}
	defer os.Chdir(wd) //nolint:errcheck
	err = gen.New().Build(&gen.Config{
		Debugger:    log.New(io.Discard, "", 0),
		SearchDir:   "./internal/http,./internal/store",
		MainAPIFile: "server.go",
		OutputDir:   tmp,
		OutputTypes: []string{"json"},
		ParseDepth:  100,
		ParseGoList: true,
		// Parse internal packages: the API's types live in internal/.
		ParseInternal:      true,
		PropNamingStrategy: "snakecase",
		LeftTemplateDelim:  "{{",
		RightTemplateDelim: "}}",
	})
	if err != nil {
		return nil, nil, fmt.Errorf("swag: %w", err)
	}
	raw, err := os.ReadFile(filepath.Join(tmp, "swagger.json"))
	if err != nil {
		return nil, nil, err
	}
	var v2 openapi2.T
	if err := json.Unmarshal(raw, &v2); err != nil {
		return nil, nil, fmt.Errorf("read swagger 2.0: %w", err)
	}
	v3, err := openapi2conv.ToV3(&v2)
	if err != nil {
		return nil, nil, fmt.Errorf("convert to OpenAPI 3: %w", err)
	}
	polish(v3)
	jsonDoc, err = json.MarshalIndent(v3, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	jsonDoc = append(jsonDoc, '\n')
	yamlDoc, err = yaml.JSONToYAML(jsonDoc)
	return jsonDoc, yamlDoc, err
}

// polish says what swag's Swagger 2.0 cannot.
func polish(doc *openapi3.T) {
	doc.Servers = openapi3.Servers{{URL: "/", Description: "this server"}}
	for _, ref := range doc.Components.Schemas {
		fixNullable(ref)
		anyData(ref)
		openObjects(ref)
		tagItems(ref)
	}
	liveContent(doc)
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for code, resp := range op.Responses.Map() {
				if strings.HasPrefix(code, "4") || strings.HasPrefix(code, "5") {
					problemContent(resp.Value)
				}
			}
		}
	}
}

// fixNullable turns swag's x-nullable and x-deprecated extensions into
// OpenAPI 3's nullable and deprecated.
func fixNullable(ref *openapi3.SchemaRef) {
	if ref == nil || ref.Value == nil {
		return
	}
	for _, p := range ref.Value.Properties {
		if p.Value != nil {
			if v, ok := p.Value.Extensions["x-nullable"]; ok && v == true {
				p.Value.Nullable = true
				delete(p.Value.Extensions, "x-nullable")
			}
			if v, ok := p.Value.Extensions["x-deprecated"]; ok && v == true {
				p.Value.Deprecated = true
				delete(p.Value.Extensions, "x-deprecated")
			}
		}
	}
}

// anyData says what an event's data is: any JSON value but null (swag can
// only say object).
func anyData(ref *openapi3.SchemaRef) {
	if ref == nil || ref.Value == nil {
		return
	}
	if d, ok := ref.Value.Properties["data"]; ok && d.Value != nil {
		d.Value = &openapi3.Schema{Description: "The payload: any JSON value but null."}
	}
}

// openObjects says that a query's matches and an event's metadata are
// objects with any fields: swag writes a bare "type: object", which
// generators read as an object with none.
func openObjects(ref *openapi3.SchemaRef) {
	if ref == nil || ref.Value == nil {
		return
	}
	yes := true
	if m, ok := ref.Value.Properties["matches"]; ok && m.Value != nil && m.Value.Items != nil && m.Value.Items.Value != nil {
		m.Value.Items.Value.AdditionalProperties = openapi3.AdditionalProperties{Has: &yes}
	}
	if m, ok := ref.Value.Properties["metadata"]; ok && m.Value != nil {
		m.Value.AdditionalProperties = openapi3.AdditionalProperties{Has: &yes}
	}
}

// tagItems says what a tag is (swag has no way to constrain the items of a
// list): 1 to 255 characters.
func tagItems(ref *openapi3.SchemaRef) {
	if ref == nil || ref.Value == nil {
		return
	}
	if t, ok := ref.Value.Properties["tags"]; ok && t.Value != nil && t.Value.Items != nil && t.Value.Items.Value != nil {
		maxLen := uint64(255)
		t.Value.Items.Value.MinLength, t.Value.Items.Value.MaxLength = 1, &maxLen
	}
}

// problemContent serves an error response as application/problem+json.
func problemContent(resp *openapi3.Response) {
	if resp == nil {
		return
	}
	if mt := resp.Content.Get("application/json"); mt != nil {
		resp.Content = openapi3.Content{"application/problem+json": mt}
	}
}
