package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/artifact"
	"github.com/taskrunner/taskrunner/tasktype"
)

// maxTextLength bounds the text a request may carry, in characters; a
// longer text is stored as an artifact first.
const maxTextLength = 100_000

// WordCountArgs is the wordcount task: a text, or the id of an artifact
// of the caller's.
type WordCountArgs struct {
	tasktype.Idempotency
	Text       string `json:"text,omitempty"`
	ArtifactID string `json:"artifact_id,omitempty"`
}

// Kind is the wordcount task's type and River job kind.
func (WordCountArgs) Kind() string { return "wordcount" }

// WordCountResult is a wordcount task's result.
type WordCountResult struct {
	Words int64 `json:"words"`
	Lines int64 `json:"lines"`
	Bytes int64 `json:"bytes"`
}

// WordCountWorker counts words, reading artifacts through the artifact
// service.
type WordCountWorker struct {
	river.WorkerDefaults[WordCountArgs]
	artifacts *artifact.Service
}

// Work counts the text's words, or streams the artifact and counts its.
func (w *WordCountWorker) Work(ctx context.Context, job *river.Job[WordCountArgs]) error {
	var body io.Reader = strings.NewReader(job.Args.Text)
	size := int64(len(job.Args.Text))
	if job.Args.ArtifactID != "" {
		// As the task's owner: another tenant's artifact is not found.
		a, err := w.artifacts.Get(tasktype.AsOwner(ctx, job.JobRow), uuid.MustParse(job.Args.ArtifactID))
		if err != nil {
			if taskrunner.ErrorCode(err) == taskrunner.CodeNotFound {
				return tasktype.NotRetried(err) // no retry brings it back
			}
			return err
		}
		obj, err := w.artifacts.Open(ctx, a)
		if err != nil {
			return err
		}
		defer obj.Close()
		body, size = obj, a.Size
	}
	res, err := count(ctx, body, size)
	if err != nil {
		return err
	}
	return tasktype.RecordOutput(ctx, res)
}

// progressEvery is how many bytes count reads between two progress
// reports.
const progressEvery = 64 << 10

// count counts the words (runs of anything but white space), lines and
// bytes r holds, reporting the bytes read as the task's progress out of
// size.
func count(ctx context.Context, r io.Reader, size int64) (WordCountResult, error) {
	var res WordCountResult
	br := bufio.NewReader(r)
	inWord, next := false, int64(progressEvery)
	for {
		ru, n, err := br.ReadRune()
		if errors.Is(err, io.EOF) {
			return res, nil
		}
		if err != nil {
			return res, err
		}
		res.Bytes += int64(n)
		switch {
		case ru == '\n':
			res.Lines++
			inWord = false
		case unicode.IsSpace(ru):
			inWord = false
		case !inWord:
			res.Words++
			inWord = true
		}
		if res.Bytes >= next {
			tasktype.ReportProgress(ctx, res.Bytes, size, "bytes read")
			next += progressEvery
		}
	}
}

// DecodeWordCount validates wordcount params: a text of at most
// maxTextLength characters, or an artifact id, not both.
func DecodeWordCount(params json.RawMessage) (WordCountArgs, error) {
	var p struct {
		Text       *string `json:"text"`
		ArtifactID *string `json:"artifact_id"`
	}
	if err := tasktype.DecodeParams(params, &p); err != nil {
		return WordCountArgs{}, err
	}
	switch {
	case (p.Text == nil) == (p.ArtifactID == nil):
		return WordCountArgs{}, tasktype.ParamError("text", "give a text or an artifact_id, not both")
	case p.Text != nil && (utf8.RuneCountInString(*p.Text) > maxTextLength || !utf8.ValidString(*p.Text)):
		return WordCountArgs{}, tasktype.ParamError("text", "must be valid text of at most 100000 characters")
	case p.Text != nil:
		return WordCountArgs{Text: *p.Text}, nil
	}
	id, err := uuid.Parse(*p.ArtifactID)
	if err != nil {
		return WordCountArgs{}, tasktype.ParamError("artifact_id", "must be an artifact's id (a UUID)")
	}
	return WordCountArgs{ArtifactID: id.String()}, nil
}

// WordCount is the wordcount task type.
func WordCount() tasktype.Type {
	return tasktype.New(tasktype.Doc{
		Params: []tasktype.Param{
			{Name: "text", Type: "string", MaxLength: maxTextLength, Description: "The text to count; or give artifact_id."},
			{Name: "artifact_id", Type: "string", Description: "An artifact of yours whose bytes to count; or give text."},
		},
		ParamsDoc: "`text` or `artifact_id`",
		Summary:   "counts words, lines and bytes; result `{\"words\", \"lines\", \"bytes\"}`",
		Result:    "`{\"words\", \"lines\", \"bytes\"}`",
		Example:   `{"text":"the quick brown fox"}`,
	}, DecodeWordCount, func(s tasktype.Services) (river.Worker[WordCountArgs], error) {
		if s.Artifacts == nil {
			return nil, errors.New("wordcount needs the artifact service")
		}
		return &WordCountWorker{artifacts: s.Artifacts}, nil
	})
}
