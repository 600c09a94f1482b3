package client

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// CallbackSecret is the caller's callback signing secret: Secret signs its
// callbacks, and during a rotation's grace Previous signs them too, until
// PreviousExpiresAt. Verify a callback with callback.Verify and either.
type CallbackSecret struct {
	Secret            string     `json:"secret"`
	Previous          *string    `json:"previous"`
	PreviousExpiresAt *time.Time `json:"previous_expires_at"`
	// Raw is the answer as the server sent it.
	Raw json.RawMessage `json:"-"`
}

// CallbackSecret returns the caller's callback signing secret (GET
// /callbacks/secret).
func (c *Client) CallbackSecret(ctx context.Context) (*CallbackSecret, error) {
	return c.callbackSecretCall(ctx, http.MethodGet, "/callbacks/secret")
}

// RotateCallbackSecret starts a rotation of the caller's callback signing
// secret and returns the new one and the previous (POST
// /callbacks/secret/rotate).
func (c *Client) RotateCallbackSecret(ctx context.Context) (*CallbackSecret, error) {
	return c.callbackSecretCall(ctx, http.MethodPost, "/callbacks/secret/rotate")
}

func (c *Client) callbackSecretCall(ctx context.Context, method, path string) (*CallbackSecret, error) {
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	var s CallbackSecret
	if err := c.doJSON(ctx, method, path, nil, nil, &s, &s.Raw); err != nil {
		return nil, err
	}
	return &s, nil
}
