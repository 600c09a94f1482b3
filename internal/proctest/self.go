package proctest

import (
	"os"
	"testing"
)

// envSelf makes a test binary run its program's main instead of its tests
// (MainOrTests), so a test can start the program as a real process
// (StartSelf).
const envSelf = "TASKRUNNER_TEST_MAIN"

// MainOrTests is a TestMain: it runs main when the binary was started by
// StartSelf, and the tests otherwise.
func MainOrTests(m *testing.M, main func()) {
	if os.Getenv(envSelf) == "1" {
		main() // exits by itself on error
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// SelfEnv is the environment of a process StartSelf starts: the marker
// that runs main, and nothing of the test's own but PATH, HOME, TMPDIR and
// the race detector's and coverage settings.
func SelfEnv() []string {
	env := []string{envSelf + "=1"}
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GORACE", "GOCOVERDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// StartSelf starts the test binary as its program (see MainOrTests) with
// args and vars, logging every line it writes; a data race in it fails the
// test.
func StartSelf(t testing.TB, name string, vars map[string]string, args ...string) *Proc {
	t.Helper()
	return Start(t, Options{Name: name, Path: os.Args[0], Args: args, Env: SelfEnv(), Vars: vars, CheckRace: true, LogAll: true})
}
