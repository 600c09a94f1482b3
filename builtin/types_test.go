package builtin_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/builtin"
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/tasktype"
)

// types are the built-in types in a deployment each type's Example is
// valid in.
var types = builtin.Registry(builtin.Config{
	Search: builtin.SearchConfig{Sources: []string{"brave"}, MaxResults: 5},
	Fetch:  fetch.Config{Allowlist: []string{"*"}},
})

// Every task type takes an idempotency key: without it a repeated
// Idempotency-Key would enqueue a second task.
func TestEveryTaskTypeTakesAnIdempotencyKey(t *testing.T) {
	for _, tt := range types.Types() {
		name := tt.Name
		args, err := tt.Decode(json.RawMessage(tt.Example))
		require.NoError(t, err, name)
		keyed, ok := tasktype.WithIdempotencyKey(args, "client/k1")
		require.True(t, ok, "%s args do not embed Idempotency", name)
		b, err := json.Marshal(keyed)
		require.NoError(t, err)
		require.Contains(t, string(b), `"idempotency_key":"client/k1"`, name)
		require.Equal(t, name, keyed.Kind())
	}
}

// FuzzDecodeFetch feeds arbitrary params to the fetch task's validation:
// what it accepts is an http(s) URL the allowlist allows.
func FuzzDecodeFetch(f *testing.F) {
	f.Add([]byte(`{"url":"https://docs.example.com/a?b=c"}`))
	f.Add([]byte(`{"url":"http://169.254.169.254/"}`))
	f.Add([]byte(`{"url":"https://evil.com@example.com/"}`))
	f.Add([]byte(`{"url":7}`))
	cfg := fetch.Config{Allowlist: []string{"*.example.com"}}
	f.Fuzz(func(t *testing.T, params []byte) {
		args, err := builtin.DecodeFetch(json.RawMessage(params), cfg)
		if err != nil {
			var pe *taskrunner.Error
			if !errors.As(err, &pe) || (pe.Code != taskrunner.CodeInvalidParams && pe.Code != taskrunner.CodeDomainNotAllowed) {
				t.Fatalf("refusal is not a *taskrunner.Error with a refusal's code: %#v", err)
			}
			return
		}
		if !strings.HasPrefix(args.URL, "http://") && !strings.HasPrefix(args.URL, "https://") {
			t.Fatalf("accepted %q", args.URL)
		}
		if _, err := fetch.CheckURL(args.URL, cfg); err != nil {
			t.Fatalf("accepted %q, which does not pass the check again: %v", args.URL, err)
		}
	})
}
