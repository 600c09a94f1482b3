// Package callback signs and verifies taskrunner's task callbacks.
//
// When a task that asked for a callback_url reaches a final state,
// taskrunner POSTs the task's view (the JSON of GET /tasks/{id} without
// its runs and artifact ids) to that URL with these headers:
//
//	Content-Type: application/json
//	Taskrunner-Event: task.completed | task.discarded | task.cancelled
//	Taskrunner-Delivery: <a UUID, the same on every retry of one delivery>
//	Taskrunner-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(CALLBACK_SECRET, t + "." + body)>
//
// as Stripe and GitHub sign theirs. A receiver checks the signature with
// Verify, which also refuses a timestamp outside a tolerance so that a
// captured request cannot be replayed later.
package callback

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Header names of a callback request.
const (
	HeaderSignature = "Taskrunner-Signature"
	HeaderEvent     = "Taskrunner-Event"
	HeaderDelivery  = "Taskrunner-Delivery"
)

// DefaultTolerance is how far a signature's timestamp may be from now in
// Verify when the caller gives no tolerance.
const DefaultTolerance = 5 * time.Minute

// Errors Verify returns.
var (
	ErrMalformed = errors.New("callback: malformed Taskrunner-Signature header")
	ErrTooOld    = errors.New("callback: signature timestamp outside the tolerance")
	ErrMismatch  = errors.New("callback: signature does not match")
)

// Sign returns the Taskrunner-Signature header value for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte("."))
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a Taskrunner-Signature header against body: some v1
// signature must be the HMAC of its timestamp and body under secret
// (compared in constant time), and the timestamp must be within tolerance
// of now (DefaultTolerance when tolerance is 0).
func Verify(secret []byte, header string, body []byte, tolerance time.Duration, now time.Time) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformed
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil {
				return ErrMalformed
			}
			sigs = append(sigs, sig)
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformed
	}
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return ErrTooOld
	}
	want := mac(secret, ts, body)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return ErrMismatch
}
