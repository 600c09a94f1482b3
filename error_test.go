package taskrunner_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
)

func TestError(t *testing.T) {
	t.Parallel()

	cause := errors.New("dial tcp 10.0.0.7:5432: connection refused")

	t.Run("CodeAndMessageOfAnErrorDeepInAChain", func(t *testing.T) {
		t.Parallel()
		err := fmt.Errorf("get task 7: %w", taskrunner.Errorf(taskrunner.CodeNotFound, "no task with id %d", 7))
		require.Equal(t, taskrunner.CodeNotFound, taskrunner.ErrorCode(err))
		require.Equal(t, "no task with id 7", taskrunner.ErrorMessage(err))
	})

	t.Run("AnyOtherErrorIsInternalAndSaysNothingOfItsCause", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, taskrunner.CodeInternal, taskrunner.ErrorCode(cause))
		require.NotContains(t, taskrunner.ErrorMessage(cause), "10.0.0.7")
		require.NotEmpty(t, taskrunner.ErrorMessage(cause))
	})

	t.Run("NilHasNoCode", func(t *testing.T) {
		t.Parallel()
		require.Empty(t, taskrunner.ErrorCode(nil))
		require.Empty(t, taskrunner.ErrorMessage(nil))
	})

	t.Run("TheCauseIsForTheLogOnly", func(t *testing.T) {
		t.Parallel()
		err := taskrunner.Unavailable(cause)
		require.Equal(t, taskrunner.CodeDependencyUnavailable, taskrunner.ErrorCode(err))
		require.NotContains(t, taskrunner.ErrorMessage(err), "10.0.0.7", "the client's message")
		require.Contains(t, err.Error(), "10.0.0.7", "the log's text")
		require.ErrorIs(t, err, cause)
	})

	t.Run("FieldErrorsNameTheirField", func(t *testing.T) {
		t.Parallel()
		err := taskrunner.Invalid("params.seconds", "must not be negative")
		require.Equal(t, taskrunner.CodeInvalidParams, err.Code)
		require.Equal(t, "params.seconds", err.Field)
		require.Equal(t, "params.seconds must not be negative", err.Message)

		err = taskrunner.FieldError(taskrunner.CodeDomainNotAllowed, "params.url", "is not on FETCH_DOMAIN_ALLOWLIST")
		require.Equal(t, taskrunner.CodeDomainNotAllowed, taskrunner.ErrorCode(err))
		require.Equal(t, "params.url", err.Field)
	})
}

func TestFinished(t *testing.T) {
	t.Parallel()
	var finished []taskrunner.Status
	for _, s := range taskrunner.Statuses {
		if taskrunner.Finished(s) {
			finished = append(finished, s)
		}
	}
	require.ElementsMatch(t, []taskrunner.Status{taskrunner.StatusCompleted, taskrunner.StatusCancelled, taskrunner.StatusDiscarded}, finished)
	require.Len(t, taskrunner.Statuses, 8)
}
