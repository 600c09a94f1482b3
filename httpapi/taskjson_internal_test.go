package httpapi

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
)

// viewFrom is a task view with every field set from the fuzzer's values.
func viewFrom(s string, raw []byte, f float64, sec int64, nsec int64, zone int, year int, flags uint8) taskView {
	loc := time.FixedZone("z", zone)
	at := time.Date(year, 3, 4, 5, 6, 7, 0, loc).Add(time.Duration(sec)*time.Second + time.Duration(nsec))
	v := taskView{taskFields: taskFields{ID: sec, TaskID: sec, Type: s, Status: "pending", Params: raw,
		Attempt: int(nsec % 7), MaxAttempts: 3, MaxRetries: 2, Priority: 1, Queue: "default", Owner: s,
		CreatedAt: at, ScheduledAt: at.UTC()}}
	if flags&1 != 0 {
		v.Result = json.RawMessage(`{"a": [1, 2,  "x"]}`)
		v.Error = &taskError{Code: taskrunner.Code(s), Message: s + "!"}
	}
	if flags&2 != 0 {
		v.TimeoutSeconds = &f
		v.CancelRequested = true
	}
	if flags&4 != 0 {
		v.Schedule = &s
		v.StartedAt, v.FinishedAt = &at, &at
	}
	if flags&8 != 0 {
		v.Progress = &taskrunner.Progress{Done: sec, Total: nsec, Message: s, Attempt: 2, Seq: 9, UpdatedAt: at}
	}
	if flags&16 != 0 {
		v.Callback = &callbackSummary{URL: "https://example.com/" + s, State: "pending", Attempts: int(sec % 5)}
	}
	return v
}

// FuzzAppendTaskView: taskViews writes a task view as encoding/json does,
// byte for byte, whenever it takes the view on.
func FuzzAppendTaskView(f *testing.F) {
	f.Add("echo", []byte(`{"msg": "hello"}`), 30.0, int64(1), int64(5), 0, 2026, uint8(0))
	f.Add("e<ch>o&", []byte(`{"msg": "<b>\u2028"}`), 0.5, int64(-7), int64(123456789), 3600, 2026, uint8(31))
	f.Add("é\"\\\n", []byte(`[1, 2.50, true, null]`), 1e-7, int64(1e9), int64(1), -5*3600-30*60, 9999, uint8(2))
	f.Add("x", []byte(nil), 1e21, int64(0), int64(0), 86400, 10000, uint8(2))
	f.Add("x", []byte(`{"a":`), math.Copysign(0, -1), int64(0), int64(0), -86399, -1, uint8(7))
	f.Add("x", []byte(``), 123456789.125, int64(0), int64(0), 0, 0, uint8(2))
	f.Fuzz(func(t *testing.T, s string, raw []byte, fl float64, sec, nsec int64, zone, year int, flags uint8) {
		v := viewFrom(s, raw, fl, sec, nsec, zone, year, flags)
		want, wantErr := encodeJSON(v)
		got, ok := taskViews.Append(nil, &v)
		if !ok {
			return // left to encoding/json
		}
		require.NoError(t, wantErr, "taskViews took what encoding/json refuses")
		require.Equal(t, string(want), string(got))
	})
}

// TestWriteTaskViews: one view and a batch are written as writeJSON writes
// them, whether taskViews takes them or leaves one to encoding/json.
func TestWriteTaskViews(t *testing.T) {
	t.Parallel()
	plain := viewFrom("echo", []byte(`{"msg": "hello"}`), 30, 1, 5, 0, 2026, 31)
	escaped := viewFrom("e<c>\"", []byte(`{"msg": "hello"}`), 30, 1, 5, 3600, 2026, 31)
	for _, views := range [][]taskView{{plain}, {escaped}, {plain, plain}, {plain, escaped, plain}} {
		for _, batch := range []bool{false, true} {
			if !batch && len(views) > 1 {
				continue
			}
			want := httptest.NewRecorder()
			if batch {
				writeJSON(want, http.StatusAccepted, batchBody{Tasks: views})
			} else {
				writeJSON(want, http.StatusAccepted, views[0])
			}
			got := httptest.NewRecorder()
			writeTaskViews(got, http.StatusAccepted, batch, views...)
			require.Equal(t, want.Code, got.Code)
			require.Equal(t, want.Header(), got.Header())
			require.Equal(t, want.Body.String(), got.Body.String())
		}
	}
}

func BenchmarkAppendTaskView(b *testing.B) {
	v := viewFrom("echo", []byte(`{"msg": "hello"}`), 30, 1, 5, 0, 2026, 2)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = taskViews.Append(buf[:0], &v)
	}
}

// TestViewFromSetsEveryField keeps FuzzAppendTaskView whole: a field added
// to the task view is fuzzed only if viewFrom sets it.
func TestViewFromSetsEveryField(t *testing.T) {
	t.Parallel()
	v := viewFrom("echo", []byte(`{}`), 30, 1, 5, 0, 2026, 31)
	var check func(rv reflect.Value, path string)
	check = func(rv reflect.Value, path string) {
		for i := range rv.NumField() {
			f, name := rv.Field(i), path+rv.Type().Field(i).Name
			if rv.Type().Field(i).Anonymous {
				check(f, name+".")
				continue
			}
			require.False(t, f.IsZero(), "viewFrom leaves %s unset: set it", name)
		}
	}
	check(reflect.ValueOf(v), "")
}

// BenchmarkWriteTaskViewsBatch writes a batch answer of fifty views.
func BenchmarkWriteTaskViewsBatch(b *testing.B) {
	views := slices.Repeat([]taskView{viewFrom("echo", []byte(`{"msg": "hello"}`), 30, 1, 5, 0, 2026, 2)}, 50)
	b.ReportAllocs()
	for b.Loop() {
		writeTaskViews(httptest.NewRecorder(), http.StatusAccepted, true, views...)
	}
}
