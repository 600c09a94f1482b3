// Package callback signs and verifies taskrunner's task callbacks.
//
// When a task that asked for a callback_url reaches a final state,
// taskrunner POSTs the task's view (the JSON of GET /tasks/{id} without
// its runs and artifact ids) to that URL with these headers:
//
//	Content-Type: application/json
//	Taskrunner-Event: task.completed | task.discarded | task.cancelled
//	Taskrunner-Delivery: <a UUID, the same on every retry of one delivery>
//	Taskrunner-Tenant: <the tenant that owns the task>
//	Taskrunner-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>
//
// as Stripe and GitHub sign theirs. The secret is the task owner's own:
// each tenant reads its signing secret with GET /callbacks/secret, and
// no tenant's secret verifies another's callbacks. (Without API keys the
// one tenant, local, signs with CALLBACK_SECRET itself until it first
// rotates.) During a rotation (POST /callbacks/secret/rotate) the header
// carries one v1 per secret in use, the new one first, so a receiver
// holding either keeps verifying.
//
// A receiver checks the signature with Verify and its own secret, which
// also refuses a timestamp outside a tolerance so that a captured request
// cannot be replayed later; then it checks that the body's "owner" (the
// same as Taskrunner-Tenant, which the signature does not cover) is the
// tenant it expects.
package callback

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
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
	// HeaderTenant names the tenant that owns the task; the signed body
	// names it too, as "owner".
	HeaderTenant = "Taskrunner-Tenant"
)

// SecretPrefix begins every tenant's derived signing secret.
const SecretPrefix = "whsec_"

// DeriveSecret is tenant's signing secret of generation gen, derived from
// master (CALLBACK_SECRET): SecretPrefix and the unpadded base64url of
// HMAC-SHA256(master, "taskrunner callback secret" NUL tenant NUL gen).
// Nothing secret need be stored: every process derives the same value,
// and no tenant's secret tells anything of master or of another's.
func DeriveSecret(master []byte, tenant string, gen int64) []byte {
	h := hmac.New(sha256.New, master)
	h.Write([]byte("taskrunner callback secret\x00"))
	h.Write([]byte(tenant))
	h.Write([]byte("\x00"))
	h.Write([]byte(strconv.FormatInt(gen, 10)))
	sum := h.Sum(nil)
	out := make([]byte, len(SecretPrefix)+base64.RawURLEncoding.EncodedLen(len(sum)))
	copy(out, SecretPrefix)
	base64.RawURLEncoding.Encode(out[len(SecretPrefix):], sum)
	return out
}

// DefaultTolerance is how far a signature's timestamp may be from now in
// Verify when the caller gives no tolerance.
const DefaultTolerance = 5 * time.Minute

// Errors Verify returns.
var (
	ErrMalformed = errors.New("callback: malformed Taskrunner-Signature header")
	ErrTooOld    = errors.New("callback: signature timestamp outside the tolerance")
	ErrMismatch  = errors.New("callback: signature does not match")
)

// Sign returns the Taskrunner-Signature header value for body sent at t:
// one v1 signature per secret, in order (the current secret, then the
// previous one while a rotation's grace lasts).
func Sign(secret []byte, t time.Time, body []byte, more ...[]byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	out := "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
	for _, s := range more {
		out += ",v1=" + hex.EncodeToString(mac(s, ts, body))
	}
	return out
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
