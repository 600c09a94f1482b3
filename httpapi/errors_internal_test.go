package httpapi

import (
	"slices"
	"testing"

	"github.com/taskrunner/taskrunner"
)

// TestEveryCodeHasAStatus fails when a code of the root package's table
// (taskrunner.Codes) has no HTTP status in codeStatus, or codeStatus maps
// one that is no code.
func TestEveryCodeHasAStatus(t *testing.T) {
	t.Parallel()
	codes := taskrunner.Codes()
	if !slices.Contains(codes, taskrunner.CodeInternal) || !slices.Contains(codes, taskrunner.CodeTaskRuntimeExceeded) {
		t.Fatalf("taskrunner.Codes misses codes it has; found %q", codes)
	}
	for _, code := range codes {
		if _, ok := codeStatus[code]; !ok {
			t.Errorf("code %q has no HTTP status in codeStatus", code)
		}
	}
	for code := range codeStatus {
		if !slices.Contains(codes, code) {
			t.Errorf("codeStatus maps %q, which is no code of taskrunner.Codes", code)
		}
	}
}
