package taskrunner_test

import (
	"errors"
	"fmt"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"slices"
	"strings"
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

// TestEveryCodeIsInTheTable walks every Code* constant of error.go, so a
// code added there is found without a list here, and fails when one is
// missing from Codes (the table that gives it its public message) or
// declared twice.
func TestEveryCodeIsInTheTable(t *testing.T) {
	t.Parallel()
	file, err := parser.ParseFile(token.NewFileSet(), "error.go", nil, 0)
	require.NoError(t, err)
	var declared []taskrunner.Code
	for _, decl := range file.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Code") {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				require.True(t, ok && lit.Kind == token.STRING, "%s is not a string literal", name.Name)
				declared = append(declared, taskrunner.Code(constant.StringVal(constant.MakeFromLiteral(lit.Value, lit.Kind, 0))))
			}
		}
	}
	require.Contains(t, declared, taskrunner.CodeInternal, "the walk of error.go missed codes it has")
	require.Len(t, declared, len(slices.Compact(slices.Sorted(slices.Values(declared)))), "a code is declared twice")
	require.ElementsMatch(t, declared, taskrunner.Codes(), "error.go's constants and the codes table differ")
}

// A code's public message is its error's own, else the code's fixed
// one, else task_failed's.
func TestPublicMessage(t *testing.T) {
	t.Parallel()
	failed := "the task failed; the server log has the details"
	require.Equal(t, failed, taskrunner.PublicMessage(taskrunner.CodeTaskFailed, nil))
	require.Equal(t, "the task was cancelled", taskrunner.PublicMessage(taskrunner.CodeTaskCancelled, errors.New("secret host")))
	require.Equal(t, failed, taskrunner.PublicMessage(taskrunner.CodeTooManyArtifacts, nil), "a code without a message of its own")
	require.Equal(t, failed, taskrunner.PublicMessage("no_such_code", nil))
	own := taskrunner.Errorf(taskrunner.CodeFetchTimeout, "no answer from example.com in 5s")
	require.Equal(t, own.Message, taskrunner.PublicMessage(taskrunner.CodeFetchTimeout, fmt.Errorf("fetch: %w", own)))
	require.Equal(t, "the page redirected too many times", taskrunner.PublicMessage(taskrunner.CodeTooManyRedirects, own),
		"an error of another code keeps its message to itself")
}
