package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/schedule"
	"github.com/taskrunner/taskrunner/storable"
	"github.com/taskrunner/taskrunner/task"
	"github.com/taskrunner/taskrunner/tasktype"
)

// FuzzTaskRequest feeds arbitrary bodies to the POST /tasks decoder and the
// validation behind it: they never panic, a refusal is always a client error
// with a stable code, and what is accepted is within the limits.
func FuzzTaskRequest(f *testing.F) {
	seeds := []string{
		`{"type":"echo","params":{"msg":"hello"},"timeout_seconds":300,"max_retries":0}`,
		`{"type":"sleep","params":{"seconds":10},"timeout_seconds":300,"max_retries":0}`,
		`{"type":"sleep","params":{"seconds":-1}}`,
		`{"type":"echo","params":{"msg":"a"},"priority":2,"queue":"default","run_at":"2030-01-01T00:00:00Z"}`,
		`{"type":"echo","params":null}`,
		`{"type":"nope"}`,
		`{"type":"echo","params":{"msg":"a"}} trailing`,
		`{"type":"echo","params":{"msg":"\u0000"},"timeout_seconds":1e308}`,
		`{"type":"sleep","params":{"seconds":1e400}}`,
		`{"max_retries":99999999999999999999}`,
		`{"type":"echo","params":{"msg":"a\u0000b"}}`,
		`{"type":"echo","params":{"msg":"\ud800"}}`,
		`{"type":"echo","params":{"msg":"\ud83d\ude00 \\u0000"}}`,
		"{\"type\":\"echo\",\"params\":{\"msg\":\"\xff\"}}",
		`{"type":"echo","params":{"m\u0000sg":"a"}}`,
		`{"ty\u0000pe":"echo"}`,
		`[]`, `null`, ``, `{`, `{"type":{"a":1}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	const maxRuntime = 600 * time.Second
	svc, _ := offlineTaskService(f, maxRuntime)
	codes := map[taskrunner.Code]bool{taskrunner.CodeInvalidJSON: true, taskrunner.CodeInvalidParams: true, taskrunner.CodeUnknownTaskType: true}

	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeTaskRequest(body)
		if err != nil {
			var apiErr *taskrunner.Error
			if !errors.As(err, &apiErr) || statusOf(apiErr.Code) != 400 || !codes[apiErr.Code] || apiErr.Message == "" {
				t.Fatalf("decode error is not a 400 with a known code: %#v", err)
			}
			return
		}
		prepared, err := svc.Validate(req)
		if err != nil {
			var taskErr *taskrunner.Error
			if !errors.As(err, &taskErr) || !codes[taskErr.Code] || taskErr.Message == "" {
				t.Fatalf("validation error is not a *taskrunner.Error with a known code: %#v", err)
			}
			return
		}
		params := prepared.RiverParams()
		if _, ok := svc.Types().Lookup(params.Args.Kind()); !ok {
			t.Fatalf("accepted an unknown kind %q", params.Args.Kind())
		}
		if params.InsertOpts.MaxAttempts < 1 {
			t.Fatalf("accepted max attempts %d", params.InsertOpts.MaxAttempts)
		}
		var meta tasktype.Metadata
		if err := json.Unmarshal(params.InsertOpts.Metadata, &meta); err != nil {
			t.Fatalf("metadata is not JSON: %v", err)
		}
		// No timeout stored: the request set none, and the cap applies.
		if (req.TimeoutSeconds == nil) != (meta.TimeoutSeconds == 0) ||
			meta.TimeoutSeconds < 0 || meta.TimeoutSeconds > maxRuntime.Seconds() {
			t.Fatalf("accepted timeout %v (asked %v) outside (0, %v]", meta.TimeoutSeconds, req.TimeoutSeconds, maxRuntime.Seconds())
		}
		args, err := json.Marshal(params.Args)
		if err != nil {
			t.Fatalf("accepted args River cannot encode: %v", err)
		}
		if p := storable.Check(args); p != nil {
			t.Fatalf("accepted args PostgreSQL cannot store: %s: %+v", args, p)
		}
		if p := storable.Check(body); p != nil {
			t.Fatalf("accepted a body holding what cannot be stored: %+v", p)
		}
	})
}

// offlineTaskService is a task service whose Validate works and whose
// pool, returned too, is never connected to.
func offlineTaskService(f *testing.F, maxRuntime time.Duration) (*task.Service, *pgxpool.Pool) {
	f.Helper()
	pool, err := pgxpool.New(context.Background(), "postgres://127.0.0.1:1/none")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(pool.Close)
	client, err := jobs.NewClient(jobs.ClientConfig{Pool: pool, Types: builtin.Registry(builtin.Config{Search: builtin.SearchConfig{Sources: []string{"brave"}, MaxResults: 10}})})
	if err != nil {
		f.Fatal(err)
	}
	svc, err := task.NewService(task.ServiceConfig{Pool: pool, Client: client, Types: builtin.Registry(builtin.Config{Search: builtin.SearchConfig{Sources: []string{"brave"}, MaxResults: 10}}), Limits: task.Limits{MaxRuntime: maxRuntime, Queues: []string{"default"}}})
	if err != nil {
		f.Fatal(err)
	}
	return svc, pool
}

// FuzzScheduleRequest feeds arbitrary bodies to the POST /schedules
// decoder and the validation behind it: they never panic, a refusal is a
// 400 with a stable code, and what is accepted has a timing that ticks
// and a valid name.
func FuzzScheduleRequest(f *testing.F) {
	for _, s := range []string{
		`{"name":"nightly","cron":"30 2 * * *","time_zone":"Europe/Paris","task":{"type":"echo","params":{"msg":"a"}}}`,
		`{"name":"tick","every":"1s","missed":"skip","task":{"type":"sleep","params":{"seconds":1}}}`,
		`{"name":"a","every":"1s","cron":"* * * * *","task":{"type":"echo","params":{"msg":"a"}}}`,
		`{"name":"a","cron":"TZ=Europe/Paris","task":{"type":"echo","params":{"msg":"a"}}}`,
		`{"name":"a","cron":"CRON_TZ=x * * * * *","task":{"type":"echo"}}`,
		`{"name":"a","cron":"*/0 * * * *","task":{"type":"echo","params":{"msg":"a"}}}`,
		`{"name":"a","cron":"0-59/61 * 31 2 *","task":{"type":"echo","params":{"msg":"a"}}}`,
		`{"name":"a","cron":"@every 1s","task":{"type":"echo","params":{"msg":"a"}}}`,
		`{"name":"a","every":"-1s","task":{"type":"echo","params":{"msg":"a"}}}`,
		`{"name":"a","every":"9223372036854775807ns","task":{"type":"echo","params":{"msg":"a"}}}`,
		`{"name":"a","cron":"* * * * *","time_zone":"../../etc/passwd","task":{"type":"echo","params":{"msg":"a"}}}`,
		`{"name":"a\u0000","every":"1s","task":{"type":"echo","params":{"msg":"a"}}}`,
		`{"name":"a","every":"1s","task":{"type":"echo","params":{"msg":"a"},"run_at":"2030-01-01T00:00:00Z"}}`,
		`{"name":"a","every":"1s","task":null}`, `{}`, `[]`, `{"name":1}`,
	} {
		f.Add([]byte(s))
	}
	tasks, pool := offlineTaskService(f, 600*time.Second)
	svc, err := schedule.NewService(pool, tasks, config.Limits{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	codes := map[taskrunner.Code]bool{taskrunner.CodeInvalidJSON: true, taskrunner.CodeInvalidParams: true, taskrunner.CodeUnknownTaskType: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeScheduleRequest(body)
		if err == nil {
			var timing schedule.Timing
			timing, err = svc.Validate(req)
			if err == nil {
				if !schedule.ValidName(req.Name) || timing.Next(time.Now()).IsZero() {
					t.Fatalf("accepted %+v, which never ticks or has a bad name", req)
				}
				if r := timing.TicksPerMinute(); !(r > 0 && r <= 60) {
					t.Fatalf("accepted %+v, ticking %v times a minute", req, r)
				}
				if p := storable.Check(body); p != nil {
					t.Fatalf("accepted a body holding what cannot be stored: %+v", p)
				}
				return
			}
		}
		var apiErr *taskrunner.Error
		if !errors.As(err, &apiErr) || statusOf(apiErr.Code) != 400 || !codes[apiErr.Code] || apiErr.Message == "" {
			t.Fatalf("refusal is not a 400 with a known code: %#v", err)
		}
	})
}

// FuzzSearchRequest feeds arbitrary bodies to the POST /search decoder: it
// never panics and refuses with a 400 and a stable code.
func FuzzSearchRequest(f *testing.F) {
	f.Add([]byte(`{"query":"open source task runner","sources":["brave"],"recency_days":7}`))
	f.Add([]byte(`{"query":"x","max_results":"ten"}`))
	f.Add([]byte(`{"query":null,"sources":null}`))
	f.Add([]byte(`{"query":"x","timeout_seconds":-1,"max_retries":2}`))
	f.Add([]byte(`{"query":"a\u0000","sources":["brave"]}`))
	f.Add([]byte(`{"query":"x","sources":["\udc00"]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeSearchRequest(body)
		if err != nil {
			var apiErr *taskrunner.Error
			if !errors.As(err, &apiErr) || statusOf(apiErr.Code) != 400 {
				t.Fatalf("decode error is not a 400: %#v", err)
			}
			return
		}
		if req.Type != "search" || !json.Valid(req.Params) {
			t.Fatalf("decoded to %+v", req)
		}
		if p := storable.Check(req.Params); p != nil {
			t.Fatalf("accepted params PostgreSQL cannot store: %s: %+v", req.Params, p)
		}
	})
}

// FuzzBulkRequest feeds arbitrary bodies to the decoder of the bulk
// actions: it never panics, refuses with a 400 and a stable code, and
// what it accepts is a filter whose params PostgreSQL can store.
func FuzzBulkRequest(f *testing.F) {
	f.Add([]byte(`{"filter":{},"dry_run":true}`))
	f.Add([]byte(`{"filter":{"type":"echo","status":["available","running"],"owner":"alice","queue":"default"}}`))
	f.Add([]byte(`{"filter":{"status":"cancelled,discarded","error_code":"task_failed","created_after":"2026-01-02T15:04:05Z"}}`))
	f.Add([]byte(`{"filter":{"params":{"msg":"a","n":[1,{"x":null}]}},"dry_run":false}`))
	f.Add([]byte(`{"filter":{"params":"x","status":7}}`))
	f.Add([]byte(`{"dry_run":true}`))
	f.Add([]byte(`{"filter":{"o\u0000wner":"a"}}`))
	f.Add([]byte(`{"filter":null,"dry_run":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		filter, _, err := decodeBulkRequest(body)
		if err != nil {
			var apiErr *taskrunner.Error
			if !errors.As(err, &apiErr) || statusOf(apiErr.Code) != 400 || apiErr.Message == "" {
				t.Fatalf("decode error is not a 400: %#v", err)
			}
			return
		}
		if len(filter.Params) > taskrunner.MaxFilterParamsBytes {
			t.Fatalf("accepted params of %d bytes", len(filter.Params))
		}
		if p := storable.Check(filter.Params); len(filter.Params) > 0 && p != nil {
			t.Fatalf("accepted params PostgreSQL cannot store: %s: %+v", filter.Params, p)
		}
	})
}

// FuzzArtifactRequest feeds arbitrary bodies to the streaming POST
// /artifacts decoder and arbitrary names to the name check: no panics,
// refusals are client errors, a body refused as invalid JSON is not valid
// JSON, a body accepted is one encoding/json and base64.StdEncoding read
// to the same fields and bytes, and no accepted name can leave its folder.
func FuzzArtifactRequest(f *testing.F) {
	f.Add([]byte(`{"task_id":1,"type":"log","content_type":"text/plain","data_base64":"SGVsbG8gd29ybGQ="}`), "report.txt")
	f.Add([]byte(`{"task_id":"12","type":"log","content_type":"text/plain","data_base64":"SGVsbG8gd29ybGQ="}`), "report.txt")
	f.Add([]byte(`{"data_base64":"SGVs\nbG8g\/d29y","name":"a\u00e9","task_id":3}`), "r")
	f.Add([]byte(`{"task_id":1,"data_base64":"%%%"}`), "../../etc/passwd")
	f.Add([]byte(`{"task_id":-1,"data_base64":""}`), "a\x00b")
	f.Add([]byte(`{"task_id":1e3}`), "..")
	f.Add([]byte(` { "task_id" : null , "type" : null } `), "x")
	f.Add([]byte(`{"task_id":1,"data_base64":"aGk=\u0041"}`), "x")
	f.Add([]byte(`{"task_id":1,"task_id":2}`), "x")
	f.Add([]byte(`{"task_id":1,"data_base64":"aGk="} {}`), "x")
	f.Add([]byte(`{"task_id":1,"type":"l\u0000g","data_base64":""}`), "a")
	f.Add([]byte("{\"task_id\":1,\"content_type\":\"text/\xff\",\"data_base64\":\"\"}"), "a")
	f.Fuzz(func(t *testing.T, body []byte, name string) {
		var data []byte
		calls := 0
		got, err := decodeArtifactStream(bytes.NewReader(body), func(_ *artifactFields, decoded io.Reader) error {
			calls++
			var err error
			data, err = io.ReadAll(decoded)
			return err
		})
		if err != nil {
			e := asError(artifactJSONError(err, nil))
			if statusOf(e.Code) != 400 || e.Message == "" {
				t.Fatalf("decode error is not a 400: %#v", err)
			}
			if e.Code == taskrunner.CodeInvalidJSON && json.Valid(body) && bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
				t.Fatalf("refused valid JSON as invalid: %v", err)
			}
		} else {
			checkArtifactDecode(t, body, got, data, calls)
			for _, s := range []string{got.Type, got.Name, got.ContentType} {
				if storable.CheckText(s) != "" {
					t.Fatalf("accepted %q, which PostgreSQL cannot store", s)
				}
			}
		}
		if artifact.CheckName(name) == nil {
			if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00\n\r") || len(name) > 255 {
				t.Fatalf("accepted name %q", name)
			}
		}
	})
}

// checkArtifactDecode checks what the streaming decoder accepted against
// encoding/json and base64.StdEncoding.
func checkArtifactDecode(t *testing.T, body []byte, got *artifactFields, data []byte, calls int) {
	t.Helper()
	var ref map[string]json.RawMessage
	if err := json.Unmarshal(body, &ref); err != nil {
		t.Fatalf("accepted what encoding/json refuses: %v", err)
	}
	str := func(key string) string {
		var v string
		if raw, ok := ref[key]; ok {
			if err := json.Unmarshal(raw, &v); err != nil && string(raw) != "null" {
				t.Fatalf("accepted %s %s, not a string", key, raw)
			}
		}
		return v
	}
	for key := range ref {
		switch key {
		case "task_id", "type", "name", "content_type", "data_base64":
		default:
			t.Fatalf("accepted field %q", key)
		}
	}
	if got.Type != str("type") || got.Name != str("name") || got.ContentType != str("content_type") {
		t.Fatalf("decoded %+v from %s", got, body)
	}
	if raw, ok := ref["task_id"]; ok && string(raw) != "null" {
		// A number, or a string of digits (without escapes: these are the
		// bytes encoding/json would decode them to).
		digits := strings.TrimLeft(strings.Trim(string(raw), `"`), "0")
		if got.TaskID == nil || strconv.FormatInt(*got.TaskID, 10) != digits {
			t.Fatalf("task_id %s decoded as %v", raw, got.TaskID)
		}
	}
	_, hasData := ref["data_base64"]
	if hasData != (calls == 1) {
		t.Fatalf("data_base64 present: %v, data called %d times", hasData, calls)
	}
	if hasData {
		want, err := base64.StdEncoding.DecodeString(str("data_base64"))
		if err != nil || !bytes.Equal(want, data) {
			t.Fatalf("data_base64 %q decoded to %q; base64.StdEncoding: %q, %v", str("data_base64"), data, want, err)
		}
	}
}
