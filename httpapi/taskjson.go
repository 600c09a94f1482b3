package httpapi

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/internal/quickjson"
)

// appendTaskView appends v encoded as encoding/json encodes it with HTML
// escaping off (writeJSON, encodeJSON), without reflection: a batch answer
// holds fifty of them. ok is false, and b is not to be used, when v holds
// what it leaves to encoding/json: a string needing an escape, a time
// MarshalJSON refuses or a float it writes with an exponent.
func appendTaskView(b []byte, v *taskView) (_ []byte, ok bool) {
	b, ok = appendTaskFields(b, &v.taskFields, true)
	if !ok {
		return b, false
	}
	b = append(b, `,"callback":`...)
	if c := v.Callback; c == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"url":`...)
		if b, ok = quickjson.AppendPlainString(b, c.URL); !ok {
			return b, false
		}
		b = append(b, `,"state":`...)
		if b, ok = quickjson.AppendPlainString(b, c.State); !ok {
			return b, false
		}
		b = append(b, `,"attempts":`...)
		b = strconv.AppendInt(b, int64(c.Attempts), 10)
		b = append(b, '}')
	}
	return append(b, '}'), true
}

// appendTaskFields appends f's members; open leaves its object open, for
// the members that follow.
func appendTaskFields(b []byte, f *taskFields, open bool) (_ []byte, ok bool) {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, f.ID, 10)
	b = append(b, `,"task_id":`...)
	b = strconv.AppendInt(b, f.TaskID, 10)
	b = append(b, `,"type":`...)
	if b, ok = quickjson.AppendPlainString(b, f.Type); !ok {
		return b, false
	}
	b = append(b, `,"status":`...)
	if b, ok = quickjson.AppendPlainString(b, f.Status); !ok {
		return b, false
	}
	b = append(b, `,"params":`...)
	if b, ok = appendRaw(b, f.Params); !ok {
		return b, false
	}
	b = append(b, `,"result":`...)
	if b, ok = appendRaw(b, f.Result); !ok {
		return b, false
	}
	b = append(b, `,"error":`...)
	if e := f.Error; e == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"code":`...)
		if b, ok = quickjson.AppendPlainString(b, e.Code); !ok {
			return b, false
		}
		b = append(b, `,"message":`...)
		if b, ok = quickjson.AppendPlainString(b, e.Message); !ok {
			return b, false
		}
		b = append(b, '}')
	}
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(f.Attempt), 10)
	b = append(b, `,"max_attempts":`...)
	b = strconv.AppendInt(b, int64(f.MaxAttempts), 10)
	b = append(b, `,"max_retries":`...)
	b = strconv.AppendInt(b, int64(f.MaxRetries), 10)
	b = append(b, `,"priority":`...)
	b = strconv.AppendInt(b, int64(f.Priority), 10)
	b = append(b, `,"queue":`...)
	if b, ok = quickjson.AppendPlainString(b, f.Queue); !ok {
		return b, false
	}
	b = append(b, `,"owner":`...)
	if b, ok = quickjson.AppendPlainString(b, f.Owner); !ok {
		return b, false
	}
	b = append(b, `,"timeout_seconds":`...)
	if f.TimeoutSeconds == nil {
		b = append(b, "null"...)
	} else if b, ok = appendPlainFloat(b, *f.TimeoutSeconds); !ok {
		return b, false
	}
	b = append(b, `,"cancel_requested":`...)
	b = strconv.AppendBool(b, f.CancelRequested)
	b = append(b, `,"schedule":`...)
	if f.Schedule == nil {
		b = append(b, "null"...)
	} else if b, ok = quickjson.AppendPlainString(b, *f.Schedule); !ok {
		return b, false
	}
	b = append(b, `,"created_at":`...)
	if b, ok = appendTime(b, f.CreatedAt); !ok {
		return b, false
	}
	b = append(b, `,"scheduled_at":`...)
	if b, ok = appendTime(b, f.ScheduledAt); !ok {
		return b, false
	}
	for _, m := range [...]struct {
		name string
		t    *time.Time
	}{{`,"started_at":`, f.StartedAt}, {`,"finished_at":`, f.FinishedAt}} {
		b = append(b, m.name...)
		if m.t == nil {
			b = append(b, "null"...)
		} else if b, ok = appendTime(b, *m.t); !ok {
			return b, false
		}
	}
	b = append(b, `,"progress":`...)
	if b, ok = appendProgress(b, f.Progress); !ok {
		return b, false
	}
	if !open {
		b = append(b, '}')
	}
	return b, true
}

func appendProgress(b []byte, p *taskrunner.Progress) (_ []byte, ok bool) {
	if p == nil {
		return append(b, "null"...), true
	}
	b = append(b, `{"done":`...)
	b = strconv.AppendInt(b, p.Done, 10)
	b = append(b, `,"total":`...)
	b = strconv.AppendInt(b, p.Total, 10)
	b = append(b, `,"message":`...)
	if b, ok = quickjson.AppendPlainString(b, p.Message); !ok {
		return b, false
	}
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(p.Attempt), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, p.Seq, 10)
	b = append(b, `,"updated_at":`...)
	if b, ok = appendTime(b, p.UpdatedAt); !ok {
		return b, false
	}
	return append(b, '}'), true
}

// appendRaw appends raw JSON compacted, as encoding/json writes a
// json.RawMessage; null for none.
func appendRaw(b []byte, raw json.RawMessage) ([]byte, bool) {
	if raw == nil {
		return append(b, "null"...), true
	}
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, raw); err != nil {
		return b, false
	}
	return buf.Bytes(), true
}

// appendPlainFloat appends f as encoding/json writes a float64 it shows
// without an exponent.
func appendPlainFloat(b []byte, f float64) ([]byte, bool) {
	if a := math.Abs(f); math.IsNaN(f) || math.IsInf(f, 0) || (a != 0 && (a < 1e-6 || a >= 1e21)) {
		return b, false
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64), true
}

// appendTime appends t as time.Time.MarshalJSON writes it, when that
// accepts it: a four-digit year and a zone offset under a day, checked on
// what it wrote as MarshalJSON checks it.
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	n0 := len(b)
	b = t.AppendFormat(b, time.RFC3339Nano)
	if len(b) < n0+len("9999-01-01T00:00:00Z") || b[n0+len("9999")] != '-' {
		return b, false
	}
	if b[len(b)-1] != 'Z' {
		zone := b[len(b)-len("Z07:00"):]
		if c := zone[0]; '0' <= c && c <= '9' || 10*(zone[1]-'0')+zone[2]-'0' >= 24 {
			return b, false
		}
	}
	return append(b, '"'), true
}
