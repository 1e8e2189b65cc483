package main

import (
	"github.com/getkin/kin-openapi/openapi3"
)

// The live follows (internal/http/live.go) answer the two read operations
// with streams as well as JSON. swag has one schema per status, so their
// media types and the frames' schemas are written here.

const sseDescription = "Server-Sent Events. Each event: `id: <offset>` and `data: <the event's JSON, an Event>`. " +
	"The first block is a `retry:` hint (ms); heartbeats are comments (`: heartbeat <RFC 3339 time>`), " +
	"at least every 15 s. The last block is `event: error` with a LiveError as its data, saying why the stream " +
	"ended and the after (or Last-Event-ID) to follow again from."

const ndjsonDescription = "Newline-delimited JSON: one object per line, an Event, a LiveHeartbeat " +
	"(at least every 15 s) or, last, a LiveErrorLine saying why the stream ended."

const sseExample = "retry: 1834\n\n" +
	`id: 1042` + "\n" + `data: {"event":"order_placed","event_id":"5f0e1c3a-8d4b-4c2e-9f6a-1b2c3d4e5f60","event_version":1,` +
	`"decider":"order","decider_id":"order-1042","data":{"total":42},"command_id":"0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f",` +
	`"previous_id":null,"final":false,"created_at":"2026-01-02T15:04:05.123456Z","offset":1042}` + "\n\n" +
	": heartbeat 2026-01-02T15:04:20Z\n\n" +
	"event: error\n" + `data: {"type":"urn:fstore:problem:shutting-down","title":"Shutting down",` +
	`"detail":"this API process is stopping: follow again with after (or Last-Event-ID) 1042","after":1042}` + "\n\n"

// liveContent adds the live frames' schemas and the stream media types of
// readEvents and queryEvents.
func liveContent(doc *openapi3.T) {
	schemas := doc.Components.Schemas
	schemas["LiveHeartbeat"] = &openapi3.SchemaRef{Value: object("A live NDJSON stream's heartbeat line.",
		"heartbeat", described(openapi3.NewDateTimeSchema(), "When it was sent."))}
	schemas["LiveError"] = &openapi3.SchemaRef{Value: object("Why a live stream ended: its last frame.",
		"type", described(openapi3.NewStringSchema(), "urn:fstore:problem:subscriber-too-slow (more events waited "+
			"for the client than the server buffers), shutting-down, or the problem type of the error that ended it "+
			"(unavailable, …)."),
		"title", openapi3.NewStringSchema(),
		"detail", openapi3.NewStringSchema(),
		"after", described(openapi3.NewInt64Schema(), "The offset of the last event sent (the request's cursor "+
			"when none was): follow again with after, or Last-Event-ID, set to it."))}
	schemas["LiveErrorLine"] = &openapi3.SchemaRef{Value: described(openapi3.NewObjectSchema(), "The last line of a live NDJSON stream.").
		WithPropertyRef("error", openapi3.NewSchemaRef("#/components/schemas/LiveError", nil)).
		WithRequired([]string{"error"})}
	schemas["LiveLine"] = &openapi3.SchemaRef{Value: &openapi3.Schema{Description: "One line of a live NDJSON stream.",
		OneOf: openapi3.SchemaRefs{
			openapi3.NewSchemaRef("#/components/schemas/Event", nil),
			openapi3.NewSchemaRef("#/components/schemas/LiveHeartbeat", nil),
			openapi3.NewSchemaRef("#/components/schemas/LiveErrorLine", nil),
		}}}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if op.OperationID != "readEvents" && op.OperationID != "queryEvents" {
				continue
			}
			ok := op.Responses.Status(200).Value
			ok.Content["text/event-stream"] = &openapi3.MediaType{
				Schema:  &openapi3.SchemaRef{Value: described(openapi3.NewStringSchema(), sseDescription)},
				Example: sseExample,
			}
			ok.Content["application/x-ndjson"] = &openapi3.MediaType{Schema: &openapi3.SchemaRef{Value: &openapi3.Schema{
				Description: ndjsonDescription,
				AllOf:       openapi3.SchemaRefs{openapi3.NewSchemaRef("#/components/schemas/LiveLine", nil)},
			}}}
		}
	}
}

// object is an object schema whose properties (name, schema pairs) are all required.
func object(description string, props ...any) *openapi3.Schema {
	s := described(openapi3.NewObjectSchema(), description)
	var required []string
	for i := 0; i+1 < len(props); i += 2 {
		name := props[i].(string)
		s.WithProperty(name, props[i+1].(*openapi3.Schema))
		required = append(required, name)
	}
	return s.WithRequired(required)
}

func described(s *openapi3.Schema, description string) *openapi3.Schema {
	s.Description = description
	return s
}
