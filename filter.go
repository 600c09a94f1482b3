package taskrunner

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/taskrunner/taskrunner/storable"
)

// Filter selects tasks. One filter serves GET /tasks (as a query string),
// the bulk actions POST /tasks/cancel, /tasks/retry and /tasks/delete (as
// the JSON object "filter") and the CLI. Every field narrows: a zero field
// does not filter, and a task matches when it matches every field that is
// set. ParseFilter and DecodeFilter are the only ways in from outside, and
// both validate every field the same way.
type Filter struct {
	// Type keeps the tasks of one task type.
	Type string `json:"type,omitempty"`
	// Statuses keeps the tasks in any of these statuses.
	Statuses []Status `json:"status,omitempty"`
	// Owner keeps the tasks of one tenant. A client tenant acts on its own
	// tasks only, whatever Owner says.
	Owner string `json:"owner,omitempty"`
	// CreatedAfter and CreatedBefore keep the tasks created strictly after
	// and strictly before these times.
	CreatedAfter  *time.Time `json:"created_after,omitempty"`
	CreatedBefore *time.Time `json:"created_before,omitempty"`
	// ErrorCode keeps the tasks whose error (as their view shows it) has
	// this code.
	ErrorCode Code `json:"error_code,omitempty"`
	// Queue keeps the tasks of one queue (as task views show it).
	Queue string `json:"queue,omitempty"`
	// Params keeps the tasks whose params contain this JSON object
	// (PostgreSQL's jsonb @>): {"msg":"hi"} matches {"msg":"hi","n":1}.
	Params json.RawMessage `json:"params,omitempty"`
}

// Bounds of a filter's fields.
const (
	// MaxFilterParamsBytes bounds the params object of a filter.
	MaxFilterParamsBytes = 4096
	// maxFilterName bounds type, owner, error_code and queue; every name
	// they can match is shorter.
	maxFilterName = 64
)

// Field names of a filter, in the query string and in JSON alike.
const (
	filterType          = "type"
	filterStatus        = "status"
	filterOwner         = "owner"
	filterCreatedAfter  = "created_after"
	filterCreatedBefore = "created_before"
	filterErrorCode     = "error_code"
	filterQueue         = "queue"
	filterParams        = "params"
)

var filterFields = []string{filterType, filterStatus, filterOwner, filterCreatedAfter, filterCreatedBefore, filterErrorCode, filterQueue, filterParams}

var (
	// codePattern is the shape of every error code of error.go.
	codePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	// queuePattern is the shape River gives queue names.
	queuePattern = regexp.MustCompile(`^[a-z0-9]+(?:[_-]?[a-z0-9]+)*$`)
)

// IsZero reports whether f selects every task.
func (f *Filter) IsZero() bool {
	return f.Type == "" && len(f.Statuses) == 0 && f.Owner == "" && f.CreatedAfter == nil && f.CreatedBefore == nil &&
		f.ErrorCode == "" && f.Queue == "" && len(f.Params) == 0
}

// ParseFilter reads a filter from a query string (GET /tasks, the CLI's
// --filter key=value). status may be repeated or hold several statuses
// separated by commas; params is a JSON object; the times are RFC 3339.
// Keys that are neither filter fields nor among also are refused, as is a
// field given twice (status aside). Refusals are task_rejected_invalid_params
// naming the field.
func ParseFilter(q url.Values, also ...string) (Filter, error) {
	for _, k := range slices.Sorted(maps.Keys(q)) {
		switch {
		case slices.Contains(also, k):
		case !slices.Contains(filterFields, k):
			return Filter{}, Invalid(boundedName(k), "is not a filter field; the fields are: %s", strings.Join(filterFields, ", "))
		case k != filterStatus && len(q[k]) > 1:
			return Filter{}, Invalid(k, "is given %d times; give it once", len(q[k]))
		}
	}
	raw := rawFilter{
		Type: q.Get(filterType), Owner: q.Get(filterOwner), CreatedAfter: q.Get(filterCreatedAfter),
		CreatedBefore: q.Get(filterCreatedBefore), ErrorCode: q.Get(filterErrorCode), Queue: q.Get(filterQueue),
	}
	for _, s := range q[filterStatus] {
		raw.Status = append(raw.Status, strings.Split(s, ",")...)
	}
	if p := q.Get(filterParams); p != "" {
		raw.Params = json.RawMessage(p)
	}
	return raw.parse("")
}

// DecodeFilter reads a filter from a JSON object (the "filter" of a bulk
// action): status is a string or a list of them, params an object, the
// times RFC 3339 strings; unknown fields are refused. Refusals are
// task_rejected_invalid_params (invalid_json for malformed JSON) naming
// the field as prefix + name: "filter.status".
func DecodeFilter(doc []byte, prefix string) (Filter, error) {
	whole := cmp.Or(strings.TrimSuffix(prefix, "."), "filter")
	trimmed := bytes.TrimSpace(doc)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Filter{}, Invalid(whole, "must be a JSON object")
	}
	if p := storable.Check(trimmed); p != nil {
		return Filter{}, Invalid(whole, "%s, which cannot be stored", p.Reason)
	}
	var raw rawFilter
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr):
			return Filter{}, Invalid(prefix+boundedName(typeErr.Field), "has the wrong type: got JSON %s", typeErr.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return Filter{}, Invalid(prefix+boundedName(name), "is not a filter field; the fields are: %s", strings.Join(filterFields, ", "))
		default:
			return Filter{}, Errorf(CodeInvalidJSON, "%s is not valid JSON", whole)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Filter{}, Errorf(CodeInvalidJSON, "%s has data after the JSON object", whole)
	}
	return raw.parse(prefix)
}

// boundedName is a field name as a refusal may quote it: cut short, and
// only when it is plain text.
func boundedName(name string) string {
	if len(name) > maxFilterName {
		name = name[:maxFilterName]
	}
	if storable.CheckText(name) != "" || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "field"
	}
	return name
}

// rawFilter is a filter as it arrives, before its fields are checked.
type rawFilter struct {
	Type          string          `json:"type"`
	Status        statusList      `json:"status"`
	Owner         string          `json:"owner"`
	CreatedAfter  string          `json:"created_after"`
	CreatedBefore string          `json:"created_before"`
	ErrorCode     string          `json:"error_code"`
	Queue         string          `json:"queue"`
	Params        json.RawMessage `json:"params"`
}

// statusList is a status as JSON gives it: one string, or a list of them.
type statusList []string

func (l *statusList) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*l = strings.Split(one, ",")
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return &json.UnmarshalTypeError{Value: "other than a string or a list of strings"}
	}
	*l = many
	return nil
}

// parse checks every field and returns the filter, naming the first bad
// field as prefix + name.
func (raw *rawFilter) parse(prefix string) (Filter, error) {
	f := Filter{Type: raw.Type, Owner: raw.Owner, ErrorCode: Code(raw.ErrorCode), Queue: raw.Queue}
	for _, nv := range [][2]string{{filterType, f.Type}, {filterOwner, f.Owner}, {filterErrorCode, raw.ErrorCode}, {filterQueue, f.Queue}} {
		name, v := nv[0], nv[1]
		if len(v) > maxFilterName {
			return Filter{}, Invalid(prefix+name, "must be at most %d characters", maxFilterName)
		}
		if storable.CheckText(v) != "" {
			return Filter{}, Invalid(prefix+name, "must be plain text")
		}
	}
	if f.ErrorCode != "" && !codePattern.MatchString(raw.ErrorCode) {
		return Filter{}, Invalid(prefix+filterErrorCode, "must be an error code such as task_failed")
	}
	if f.Queue != "" && !queuePattern.MatchString(f.Queue) {
		return Filter{}, Invalid(prefix+filterQueue, "must be a queue name: lower-case letters and digits, joined by single _ or -")
	}
	for _, name := range raw.Status {
		s := Status(strings.TrimSpace(name))
		if s == "" || slices.Contains(f.Statuses, s) {
			continue
		}
		if !slices.Contains(Statuses, s) {
			return Filter{}, Invalid(prefix+filterStatus, "must be one or more of: %s", strings.Join(StatusNames(Statuses), ", "))
		}
		f.Statuses = append(f.Statuses, s)
	}
	var err error
	if f.CreatedAfter, err = parseFilterTime(raw.CreatedAfter, prefix+filterCreatedAfter); err != nil {
		return Filter{}, err
	}
	if f.CreatedBefore, err = parseFilterTime(raw.CreatedBefore, prefix+filterCreatedBefore); err != nil {
		return Filter{}, err
	}
	if f.Params, err = parseFilterParams(raw.Params, prefix+filterParams); err != nil {
		return Filter{}, err
	}
	return f, nil
}

func parseFilterTime(s, field string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 1 || t.Year() > 9999 {
		return nil, Invalid(field, `must be an RFC 3339 time such as "2026-01-02T15:04:05Z"`)
	}
	return &t, nil
}

// parseFilterParams checks that params is a bounded, storable JSON object
// and returns it compacted; nil for none (absent, empty or JSON null).
func parseFilterParams(p json.RawMessage, field string) (json.RawMessage, error) {
	p = bytes.TrimSpace(p)
	if len(p) == 0 || string(p) == "null" {
		return nil, nil
	}
	if len(p) > MaxFilterParamsBytes {
		return nil, Invalid(field, "must be at most %d bytes", MaxFilterParamsBytes)
	}
	var obj map[string]json.RawMessage
	if p[0] != '{' || json.Unmarshal(p, &obj) != nil {
		return nil, Invalid(field, `must be a JSON object, such as {"msg":"hello"}`)
	}
	if pr := storable.Check(p); pr != nil {
		return nil, Invalid(field, "%s, which cannot be stored", pr.Reason)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, p); err != nil {
		return nil, Invalid(field, `must be a JSON object, such as {"msg":"hello"}`)
	}
	return buf.Bytes(), nil
}

// Values is f as a query string, which ParseFilter reads back.
func (f *Filter) Values() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set(filterType, f.Type)
	set(filterStatus, strings.Join(StatusNames(f.Statuses), ","))
	set(filterOwner, f.Owner)
	if f.CreatedAfter != nil {
		set(filterCreatedAfter, f.CreatedAfter.Format(time.RFC3339Nano))
	}
	if f.CreatedBefore != nil {
		set(filterCreatedBefore, f.CreatedBefore.Format(time.RFC3339Nano))
	}
	set(filterErrorCode, string(f.ErrorCode))
	set(filterQueue, f.Queue)
	set(filterParams, string(f.Params))
	return q
}

// String is f as a log line shows it: its query string.
func (f *Filter) String() string { return f.Values().Encode() }
