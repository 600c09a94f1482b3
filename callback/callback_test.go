package callback_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner/callback"
)

var secret = []byte("0123456789abcdef-test-secret")

func TestSignThenVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"id":1,"status":"completed"}`)
	h := callback.Sign(secret, now, body)
	require.Regexp(t, `^t=1700000000,v1=[0-9a-f]{64}$`, h)

	require.NoError(t, callback.Verify(secret, h, body, time.Minute, now.Add(30*time.Second)))
	require.ErrorIs(t, callback.Verify(secret, h, []byte(`{"id":2}`), time.Minute, now), callback.ErrMismatch)
	require.ErrorIs(t, callback.Verify([]byte("another-secret-entirely"), h, body, time.Minute, now), callback.ErrMismatch)
	require.ErrorIs(t, callback.Verify(secret, h, body, time.Minute, now.Add(2*time.Minute)), callback.ErrTooOld, "a replay")
	require.ErrorIs(t, callback.Verify(secret, h, body, time.Minute, now.Add(-2*time.Minute)), callback.ErrTooOld)
	require.NoError(t, callback.Verify(secret, h, body, 0, now.Add(4*time.Minute)), "DefaultTolerance")

	// A rotated secret: several v1 signatures, one matching.
	other := callback.Sign([]byte("old-secret-old-secret"), now, body)
	both := h + "," + other[strings.Index(other, "v1="):]
	require.NoError(t, callback.Verify(secret, both, body, time.Minute, now))
}

func TestVerifyRefusesMalformedHeaders(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	for _, h := range []string{"", "t=1700000000", "v1=00", "t=x,v1=00", "t=1700000000,v1=zz", "garbage"} {
		require.ErrorIs(t, callback.Verify(secret, h, nil, time.Minute, now), callback.ErrMalformed, "%q", h)
	}
}

func FuzzVerify(f *testing.F) {
	now := time.Unix(1_700_000_000, 0)
	f.Add(callback.Sign(secret, now, []byte("{}")), []byte("{}"))
	f.Add("t=1,v1=,v1=ab", []byte(""))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		err := callback.Verify(secret, header, body, time.Minute, now)
		if err == nil {
			// Only a correct signature of this body verifies.
			require.Contains(t, header, callback.Sign(secret, now, body)[len("t=1700000000,"):][:10])
		}
	})
}

// A receiver checks each request's signature before trusting its body.
func ExampleVerify() {
	body := []byte(`{"id":42,"status":"completed"}`)
	sent := time.Unix(1_700_000_000, 0)
	header := callback.Sign([]byte("the CALLBACK_SECRET"), sent, body) // what taskrunner sends

	err := callback.Verify([]byte("the CALLBACK_SECRET"), header, body, 5*time.Minute, sent.Add(3*time.Second))
	fmt.Println(err)
	// Output: <nil>
}

func TestDeriveSecret(t *testing.T) {
	t.Parallel()
	master := []byte("callback-master-secret-0123")
	alice0 := callback.DeriveSecret(master, "alice", 0)
	require.Regexp(t, `^whsec_[A-Za-z0-9_-]{43}$`, string(alice0))
	require.Equal(t, alice0, callback.DeriveSecret(master, "alice", 0), "the same in every process")
	require.NotEqual(t, alice0, callback.DeriveSecret(master, "alice", 1), "each generation its own")
	require.NotEqual(t, alice0, callback.DeriveSecret(master, "bob", 0), "each tenant its own")
	require.NotEqual(t, alice0, callback.DeriveSecret([]byte("another-master-secret-456"), "alice", 0))
	// The separators keep a tenant's name and a generation apart.
	require.NotEqual(t, callback.DeriveSecret(master, "a1", 0), callback.DeriveSecret(master, "a", 10))
	require.NotContains(t, string(alice0), string(master))
}

func TestSignWithSeveralSecrets(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"id":1,"owner":"alice"}`)
	cur, prev := []byte("whsec_current-current"), []byte("whsec_previous-previous")
	h := callback.Sign(cur, now, body, prev)
	require.Regexp(t, `^t=1700000000,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$`, h)
	require.Equal(t, callback.Sign(cur, now, body), h[:strings.LastIndex(h, ",")], "the current secret's first")
	require.NoError(t, callback.Verify(cur, h, body, time.Minute, now))
	require.NoError(t, callback.Verify(prev, h, body, time.Minute, now))
	require.ErrorIs(t, callback.Verify([]byte("whsec_neither-neither"), h, body, time.Minute, now), callback.ErrMismatch)
}
