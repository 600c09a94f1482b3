package artifact

import (
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/taskrunner/taskrunner"
)

// Cursor is where a page of a task's artifacts ends: the last artifact's
// creation time and id, the order they are listed in. Its text form,
// <microseconds since 1970>.<id>, is what GET /tasks/{id}/artifacts
// returns as next_cursor.
type Cursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// String is the cursor's text form. PostgreSQL keeps microseconds, so
// nothing is lost.
func (c Cursor) String() string {
	return strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "." + c.ID.String()
}

// maxCursorLength bounds a cursor: 20 digits, a dot and a 36-character id.
const maxCursorLength = 57

// ParseCursor reads a cursor's text form; anything else is refused as
// not a cursor this API returned.
func ParseCursor(s string) (Cursor, error) {
	bad := taskrunner.Invalid("cursor", "is not a cursor this API returned")
	if len(s) > maxCursorLength {
		return Cursor{}, bad
	}
	micros, id, ok := strings.Cut(s, ".")
	if !ok || len(id) != 36 || micros == "" || micros[0] == '+' || micros[0] == '-' {
		return Cursor{}, bad
	}
	n, err := strconv.ParseInt(micros, 10, 64)
	if err != nil {
		return Cursor{}, bad
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return Cursor{}, bad
	}
	return Cursor{CreatedAt: time.UnixMicro(n).UTC(), ID: u}, nil
}
