// Command embed is taskrunner with a task type of its own: wordcount,
// which counts the words of a text, or of an artifact a task stored, next
// to the built-in types. It is the whole of taskrunner (the API, River UI,
// schedules, callbacks, the workers and the command line), run as
//
//	go run ./examples/embed migrate up
//	go run ./examples/embed serve
//
// with the same environment as taskrunner itself.
package main

import (
	"github.com/taskrunner/taskrunner/app"
	"github.com/taskrunner/taskrunner/cli"
	"github.com/taskrunner/taskrunner/config"
	"github.com/taskrunner/taskrunner/tasktype"
)

func main() {
	cli.Main(func(cfg *config.Config) []tasktype.Type {
		return append(app.Builtins(cfg), WordCount())
	})
}
