package builtin_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/builtin"
)

// FuzzDecodeSearch feeds arbitrary params to the search task's validation:
// it never panics, refusals are *taskrunner.Error, and what it accepts is within
// the allowlist and the result cap.
func FuzzDecodeSearch(f *testing.F) {
	f.Add([]byte(`{"query":"open source task runner","sources":["brave"],"recency_days":7}`))
	f.Add([]byte(`{"query":"x","sources":["google"]}`))
	f.Add([]byte(`{"query":"x","max_results":100000,"recency_days":-3}`))
	f.Add([]byte(`{"query":"\ud800","sources":["BRAVE "," brave"]}`))
	f.Add([]byte(`{"query":7}`))
	env := builtin.SearchConfig{Sources: []string{"brave", "searxng"}, MaxResults: 10}
	f.Fuzz(func(t *testing.T, params []byte) {
		args, err := builtin.DecodeSearch(json.RawMessage(params), env)
		if err != nil {
			var pe *taskrunner.Error
			if !errors.As(err, &pe) || (pe.Code != taskrunner.CodeInvalidParams && pe.Code != taskrunner.CodeDomainNotAllowed) {
				t.Fatalf("refusal is not a *taskrunner.Error with a refusal's code: %#v", err)
			}
			return
		}
		if args.Query == "" || len(args.Sources) == 0 || args.MaxResults < 1 || args.MaxResults > env.MaxResults {
			t.Fatalf("accepted %+v", args)
		}
		for _, s := range args.Sources {
			if !slices.Contains(env.Sources, s) {
				t.Fatalf("accepted source %q", s)
			}
		}
	})
}
