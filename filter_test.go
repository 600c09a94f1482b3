package taskrunner_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
)

func TestParseFilter(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		query string
		want  taskrunner.Filter
		field string // the refused field; "" when accepted
	}{
		{"empty", "", taskrunner.Filter{}, ""},
		{"every field", "type=echo&status=available&owner=alice&created_after=2026-01-02T15:04:05Z&created_before=2026-01-02T15:04:05Z" +
			"&error_code=task_failed&queue=default&params=%7B%22msg%22%3A+%22a%22%7D",
			taskrunner.Filter{Type: "echo", Statuses: []taskrunner.Status{"available"}, Owner: "alice", CreatedAfter: &at, CreatedBefore: &at,
				ErrorCode: "task_failed", Queue: "default", Params: json.RawMessage(`{"msg":"a"}`)}, ""},
		{"statuses repeated and comma-separated, once each", "status=available,running&status=running&status=%20cancelled",
			taskrunner.Filter{Statuses: []taskrunner.Status{"available", "running", "cancelled"}}, ""},
		{"the page keys pass", "cursor=5&limit=2", taskrunner.Filter{}, ""},
		{"params null is none", "params=null", taskrunner.Filter{}, ""},
		{"unknown key", "sort=id", taskrunner.Filter{}, "sort"},
		{"a key twice", "owner=a&owner=b", taskrunner.Filter{}, "owner"},
		{"unknown status", "status=done", taskrunner.Filter{}, "status"},
		{"bad time", "created_after=2026-01-02", taskrunner.Filter{}, "created_after"},
		{"params not an object", "params=%5B1%5D", taskrunner.Filter{}, "params"},
		{"params not JSON", "params=%7B", taskrunner.Filter{}, "params"},
		{"params too large", "params=" + url.QueryEscape(`{"a":"`+strings.Repeat("x", taskrunner.MaxFilterParamsBytes)+`"}`), taskrunner.Filter{}, "params"},
		{"params with a NUL", "params=" + url.QueryEscape(`{"a":"\u0000"}`), taskrunner.Filter{}, "params"},
		{"error code not a code", "error_code=Task+Failed", taskrunner.Filter{}, "error_code"},
		{"queue not a queue", "queue=a--b", taskrunner.Filter{}, "queue"},
		{"owner too long", "owner=" + strings.Repeat("o", 65), taskrunner.Filter{}, "owner"},
		{"type with a NUL", "type=a%00", taskrunner.Filter{}, "type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			require.NoError(t, err)
			f, err := taskrunner.ParseFilter(q, "cursor", "limit")
			if tc.field != "" {
				var e *taskrunner.Error
				require.True(t, errors.As(err, &e), "err: %v", err)
				require.Equal(t, taskrunner.CodeInvalidParams, e.Code)
				require.Equal(t, tc.field, e.Field)
				require.True(t, strings.HasPrefix(e.Message, tc.field+" "), e.Message)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, f)
		})
	}
}

func TestDecodeFilter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		doc   string
		want  taskrunner.Filter
		code  taskrunner.Code
		field string
	}{
		{`{}`, taskrunner.Filter{}, "", ""},
		{`{"status":"available"}`, taskrunner.Filter{Statuses: []taskrunner.Status{"available"}}, "", ""},
		{`{"status":"available,running"}`, taskrunner.Filter{Statuses: []taskrunner.Status{"available", "running"}}, "", ""},
		{`{"status":["available","available"]}`, taskrunner.Filter{Statuses: []taskrunner.Status{"available"}}, "", ""},
		{`{"params":{"msg": "a"},"owner":"bob"}`, taskrunner.Filter{Params: json.RawMessage(`{"msg":"a"}`), Owner: "bob"}, "", ""},
		{`{"params":null}`, taskrunner.Filter{}, "", ""},
		{`{"status":7}`, taskrunner.Filter{}, taskrunner.CodeInvalidParams, "filter.status"},
		{`{"status":["done"]}`, taskrunner.Filter{}, taskrunner.CodeInvalidParams, "filter.status"},
		{`{"owner":1}`, taskrunner.Filter{}, taskrunner.CodeInvalidParams, "filter.owner"},
		{`{"owner":"a","sort":"id"}`, taskrunner.Filter{}, taskrunner.CodeInvalidParams, "filter.sort"},
		{`{"params":"{}"}`, taskrunner.Filter{}, taskrunner.CodeInvalidParams, "filter.params"},
		{`{"created_before":"2026-01-02 15:04"}`, taskrunner.Filter{}, taskrunner.CodeInvalidParams, "filter.created_before"},
		{`[]`, taskrunner.Filter{}, taskrunner.CodeInvalidParams, "filter"},
		{`{"owner":"\u0000"}`, taskrunner.Filter{}, taskrunner.CodeInvalidParams, "filter"},
		{`{"owner":"a"} {}`, taskrunner.Filter{}, taskrunner.CodeInvalidJSON, ""},
		{`{"owner":`, taskrunner.Filter{}, taskrunner.CodeInvalidJSON, ""},
	} {
		f, err := taskrunner.DecodeFilter([]byte(tc.doc), "filter.")
		if tc.code == "" {
			require.NoError(t, err, tc.doc)
			require.Equal(t, tc.want, f, tc.doc)
			continue
		}
		var e *taskrunner.Error
		require.True(t, errors.As(err, &e), "%s: %v", tc.doc, err)
		require.Equal(t, tc.code, e.Code, tc.doc)
		require.Equal(t, tc.field, e.Field, tc.doc)
	}
}

// requireFilterRoundTrips requires an accepted filter to read back the
// same from both of its encodings, its query string and its JSON.
func requireFilterRoundTrips(t *testing.T, f taskrunner.Filter) {
	t.Helper()
	back, err := taskrunner.ParseFilter(f.Values())
	require.NoError(t, err, "query %s", f.Values().Encode())
	require.Equal(t, f.Values(), back.Values())
	doc, err := json.Marshal(f)
	require.NoError(t, err)
	back, err = taskrunner.DecodeFilter(doc, "")
	require.NoError(t, err, "json %s", doc)
	require.Equal(t, f.Values(), back.Values())
}

// requireRefusal requires err to be a client's refusal with a stable code.
func requireRefusal(t *testing.T, err error) {
	t.Helper()
	var e *taskrunner.Error
	require.True(t, errors.As(err, &e), "not a taskrunner.Error: %v", err)
	require.Contains(t, []taskrunner.Code{taskrunner.CodeInvalidParams, taskrunner.CodeInvalidJSON}, e.Code)
	require.NotEmpty(t, e.Message)
}

// FuzzParseFilter feeds arbitrary query strings to the filter's query
// decoder: it never panics, refuses with a stable code, and what it
// accepts reads back the same from both encodings.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"", "type=echo&status=available,running&owner=alice", "created_after=2026-01-02T15:04:05.123+02:00",
		"params=%7B%22msg%22%3A%22a%22%7D", "status=&status=,", "error_code=task_failed&queue=default",
		"params=%7B%22a%22%3A%5B1%2C%7B%7D%5D%7D", "owner=%FF", "x=1", "created_before=0000-01-01T00:00:00Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		filter, err := taskrunner.ParseFilter(q)
		if err != nil {
			requireRefusal(t, err)
			return
		}
		requireFilterRoundTrips(t, filter)
	})
}

// FuzzDecodeFilter is FuzzParseFilter for the JSON decoder.
func FuzzDecodeFilter(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"type":"echo","status":["available","running"],"owner":"alice"}`, `{"status":"available,cancelled"}`,
		`{"created_after":"2026-01-02T15:04:05Z","created_before":"2027-01-02T15:04:05Z"}`, `{"params":{"msg":"a","n":[1,2]}}`,
		`{"error_code":"task_failed","queue":"default"}`, `{"params":"x"}`, `{"status":[null]}`, `{"a":1}`, `null`, `{"owner":"\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		filter, err := taskrunner.DecodeFilter(doc, "filter.")
		if err != nil {
			requireRefusal(t, err)
			return
		}
		requireFilterRoundTrips(t, filter)
	})
}
