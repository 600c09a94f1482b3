package task

import "github.com/riverqueue/river"

// PreparedOf is p as Validate would return it, for tests that need a task
// Validate would refuse (one River then refuses).
func PreparedOf(p river.InsertManyParams) Prepared { return Prepared{p} }
