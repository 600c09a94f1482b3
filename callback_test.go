package taskrunner_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
)

func TestCallbackTallyState(t *testing.T) {
	t.Parallel()
	for tally, want := range map[taskrunner.CallbackTally]string{
		{}:                             taskrunner.CallbackPending,
		{Attempts: 3}:                  taskrunner.CallbackPending,
		{Attempts: 2, Delivered: true}: taskrunner.CallbackDelivered,
		{Attempts: 12, GaveUp: true}:   taskrunner.CallbackFailed,
		{Attempts: 2, Delivered: true, GaveUp: true}: taskrunner.CallbackDelivered,
	} {
		require.Equal(t, want, tally.State(), "%+v", tally)
	}
}
