package client

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
)

// Bounds of Wait.
const (
	// LongPollWait is how long one GET /tasks/{id}?wait= is held when the
	// event stream is not available.
	LongPollWait = 30 * time.Second
	// streamIdleTimeout ends an event stream that has sent nothing, not
	// even the server's keep-alive (every 15 s), for this long.
	streamIdleTimeout = 45 * time.Second
	// maxTransientFailures is how many failed requests in a row a wait
	// survives (the server restarting, a dependency down for a moment).
	maxTransientFailures = 5
	// maxEventSize bounds one server-sent event (a task with its result).
	maxEventSize = 32 << 20
)

// Wait waits until task id is finished (completed, cancelled or discarded)
// and returns it. onState, when not nil, is called with the task first and
// then each time its status or attempt changes, including the final one.
//
// It follows the task's event stream (GET /tasks/{id}/events) and falls
// back to long polls (GET /tasks/{id}?wait=30s) when the stream is not
// available. When ctx ends first, Wait returns the task as last seen (nil
// if it was never seen) and ctx's error.
func (c *Client) Wait(ctx context.Context, id int64, onState func(*Task)) (*Task, error) {
	return c.WaitProgress(ctx, id, onState, nil)
}

// WaitProgress is Wait that also calls onProgress, when not nil, with each
// new progress report of the task's worker (from the event stream, or from
// the task as each long poll returns it). A stream that breaks is resumed
// from the last event received (Last-Event-ID).
func (c *Client) WaitProgress(ctx context.Context, id int64, onState func(*Task), onProgress func(Progress)) (*Task, error) {
	var last *Task
	var lastProgress *Progress
	progress := func(p *Progress) {
		if p == nil || (lastProgress != nil && p.Attempt == lastProgress.Attempt && p.Seq == lastProgress.Seq) {
			return
		}
		lastProgress = p
		if onProgress != nil {
			onProgress(*p)
		}
	}
	report := func(t *Task) {
		changed := last == nil || t.Status != last.Status || t.Attempt != last.Attempt
		last = t
		if changed && onState != nil {
			onState(t)
		}
		if !t.Finished() {
			progress(t.Progress)
		}
	}
	var lastEventID string
	stream, failures := true, 0
	for {
		var err error
		if stream {
			var gotAny bool
			gotAny, err = c.followEvents(ctx, id, &lastEventID, report, progress)
			switch {
			case last != nil && last.Finished():
				return last, nil
			case ctx.Err() != nil:
				return last, ctx.Err()
			case err == nil && gotAny:
				continue // the server ended a long stream: follow it again
			case err == nil:
				err = errors.New("the event stream ended without an event")
			}
			if !transient(err) {
				return last, err
			}
			stream = false // no stream here: poll instead
		} else {
			var t *Task
			t, err = c.longPoll(ctx, id)
			if err == nil {
				failures = 0
				report(t)
				if t.Finished() {
					return t, nil
				}
				continue
			}
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			if !transient(err) {
				return last, err
			}
			failures++
			if failures >= maxTransientFailures {
				return last, err
			}
		}
		if err := sleep(ctx, backoff(failures, err)); err != nil {
			return last, err
		}
	}
}

func (c *Client) longPoll(ctx context.Context, id int64) (*Task, error) {
	wait := LongPollWait
	if dl, ok := ctx.Deadline(); ok {
		// Let the server answer just before the caller gives up, so the
		// last state is seen.
		// A short wait near the end keeps the loop from spinning.
		wait = max(min(wait, time.Until(dl)-200*time.Millisecond), time.Second)
	}
	wait = wait.Truncate(time.Millisecond)
	ctx, cancel := context.WithTimeout(ctx, wait+c.requestTimeout())
	defer cancel()
	return c.getTask(ctx, id, wait)
}

func (c *Client) requestTimeout() time.Duration {
	if c.RequestTimeout > 0 {
		return c.RequestTimeout
	}
	return DefaultRequestTimeout
}

// transient reports whether a wait may go on after err: the connection
// failed or the server could not serve it for now, as opposed to a refusal
// (not found, unauthorized) that a retry would only repeat.
func transient(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		switch apiErr.StatusCode {
		case 0, http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return true // transport errors, a broken or foreign stream
}

func backoff(failures int, err error) time.Duration {
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.RetryAfter > 0 {
		return min(apiErr.RetryAfter, 30*time.Second)
	}
	if failures == 0 {
		return 0
	}
	return min(500*time.Millisecond<<(failures-1), 10*time.Second)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// followEvents reads the task's event stream, reporting each state and
// progress, until the task is finished or the stream ends. gotAny says
// whether any event came. lastID is sent as Last-Event-ID when set, and
// takes the id of each event received.
func (c *Client) followEvents(ctx context.Context, id int64, lastID *string, report func(*Task), progress func(*Progress)) (gotAny bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := c.newRequest(ctx, http.MethodGet, taskPath(id)+"/events", nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}

	// A stream that goes silent (a dead connection, a proxy holding it)
	// is given up on.
	idle := time.AfterFunc(streamIdleTimeout, func() { cancel(errStreamIdle) })
	defer idle.Stop()

	resp, err := c.hc.Do(req)
	if err != nil {
		return false, causeOr(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, errorOf(resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return false, fmt.Errorf("the event stream answered with %q, not text/event-stream", mt)
	}

	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventSize)
	var event, eventID string
	var data strings.Builder
	for sc.Scan() {
		idle.Reset(streamIdleTimeout)
		line := sc.Text()
		if line != "" {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				event = value
			case "id":
				eventID = value
			case "data":
				if data.Len() > 0 {
					data.WriteByte('\n')
				}
				data.WriteString(value)
			}
			continue // comments (keep-alives) and other fields
		}
		// A blank line dispatches the event.
		name, payload := event, data.String()
		if eventID != "" && name != "error" {
			*lastID = eventID
		}
		event, eventID = "", ""
		data.Reset()
		switch name {
		case "progress":
			var p Progress
			if err := json.Unmarshal([]byte(payload), &p); err != nil {
				return gotAny, fmt.Errorf("a progress event that is not progress: %w", err)
			}
			gotAny = true
			progress(&p)
		case "state":
			var t Task
			if err := json.Unmarshal([]byte(payload), &t); err != nil {
				return gotAny, fmt.Errorf("a state event that is not a task: %w", err)
			}
			t.Raw = json.RawMessage(payload)
			gotAny = true
			report(&t)
			if t.Finished() {
				return true, nil
			}
		case "error":
			var d struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			}
			_ = json.Unmarshal([]byte(payload), &d)
			if d.Code == "" {
				d.Code = "stream_error"
			}
			return gotAny, &APIError{Code: d.Code, Message: d.Message}
		case "end":
			return gotAny, nil
		}
	}
	if err := sc.Err(); err != nil {
		return gotAny, causeOr(ctx, err)
	}
	return gotAny, causeOr(ctx, nil)
}

// errStreamIdle ends an event stream that went silent.
var errStreamIdle = fmt.Errorf("the event stream was silent for %s", streamIdleTimeout)

// causeOr is errStreamIdle when ctx ended because the stream went silent,
// else err.
func causeOr(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errStreamIdle) {
		return errStreamIdle
	}
	return err
}

// copyChecked copies src to dst, checking the length against size (when
// known) and the bytes against a sha256 in hex (when it looks like one).
func copyChecked(dst io.Writer, src io.Reader, size int64, sha string) (int64, error) {
	var h hash.Hash
	if len(sha) == sha256.Size*2 {
		if _, err := hex.DecodeString(sha); err == nil {
			h = sha256.New()
			dst = io.MultiWriter(dst, h)
		}
	}
	n, err := io.Copy(dst, src)
	if err != nil {
		return n, err
	}
	if size >= 0 && n != size {
		return n, fmt.Errorf("the download ended after %d of %d bytes", n, size)
	}
	if h != nil && !strings.EqualFold(hex.EncodeToString(h.Sum(nil)), sha) {
		return n, ErrChecksumMismatch
	}
	return n, nil
}
