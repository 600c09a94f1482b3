package artifact_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/artifact"
)

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	c := artifact.Cursor{CreatedAt: time.Date(2026, 12, 7, 21, 0, 0, 123456000, time.UTC), ID: uuid.New()}
	got, err := artifact.ParseCursor(c.String())
	require.NoError(t, err)
	require.Equal(t, c, got)
	for _, bad := range []string{"", "1", "x." + c.ID.String(), "+1." + c.ID.String(), "-1." + c.ID.String(), "1.2",
		"1.{" + c.ID.String()[1:] + "}", "99999999999999999999." + c.ID.String(), "1." + c.ID.String() + "x"} {
		_, err := artifact.ParseCursor(bad)
		require.Error(t, err, bad)
		require.Equal(t, taskrunner.CodeInvalidParams, taskrunner.ErrorCode(err), bad)
	}
}

// FuzzParseCursor: a cursor comes from a query string. ParseCursor never
// panics, refuses with the one code, and what it accepts reads back the
// same once written.
func FuzzParseCursor(f *testing.F) {
	f.Add("1765141200123456.0b5e5bde-0f41-4e8c-9c43-7f5b2d8c1a11")
	f.Add("0.00000000-0000-0000-0000-000000000000")
	f.Add("-1.0b5e5bde-0f41-4e8c-9c43-7f5b2d8c1a11")
	f.Add("1.urn:uuid:0b5e5bde-0f41-4e8c-9c43")
	f.Add("")
	f.Add("..")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := artifact.ParseCursor(s)
		if err != nil {
			require.Equal(t, taskrunner.CodeInvalidParams, taskrunner.ErrorCode(err))
			return
		}
		again, err := artifact.ParseCursor(c.String())
		require.NoError(t, err)
		require.Equal(t, c, again)
	})
}
