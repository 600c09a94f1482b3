package jobs

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/callback"
	"github.com/taskrunner/taskrunner/db"
)

// Defaults of CallbackSecretsConfig.
const (
	// DefaultCallbackSecretGrace is how long a tenant's previous secret
	// still signs after a rotation (CALLBACK_ROTATION_GRACE).
	DefaultCallbackSecretGrace = 24 * time.Hour
	// DefaultCallbackSecretCacheTTL is how long a process signs with the
	// generations it read before reading them again: a rotation made in
	// another process takes effect within it.
	DefaultCallbackSecretCacheTTL = 2 * time.Second
)

// maxCachedSecretOwners bounds the cache of CallbackSecrets; past it the
// cache starts over.
const maxCachedSecretOwners = 4096

// CallbackSecretsConfig is what CallbackSecrets are built from.
type CallbackSecretsConfig struct {
	// Master is CALLBACK_SECRET, which every tenant's secret is derived
	// from. Required.
	Master []byte
	// DB holds each tenant's generation. Required.
	DB db.Executor
	// Grace is how long the previous secret still signs after a rotation;
	// DefaultCallbackSecretGrace when 0.
	Grace time.Duration
	// CacheTTL is how long Signing keeps what it read;
	// DefaultCallbackSecretCacheTTL when 0.
	CacheTTL time.Duration
}

// CallbackSecrets are the tenants' callback signing secrets. Tenant
// owner's secret of generation g is callback.DeriveSecret(Master, owner,
// g), except that generation 0 of the local tenant (a server without API
// keys) is Master itself, so that receivers set up before secrets were
// per tenant keep verifying. The database keeps only the generations;
// every process derives the same secrets from them.
type CallbackSecrets struct {
	cfg CallbackSecretsConfig
	now func() time.Time

	mu    sync.Mutex
	cache map[string]cachedGeneration
}

type cachedGeneration struct {
	gen db.CallbackSecretGeneration
	at  time.Time
}

// NewCallbackSecrets returns the secrets of cfg, or an error naming a
// missing field.
func NewCallbackSecrets(cfg CallbackSecretsConfig) (*CallbackSecrets, error) {
	switch {
	case len(cfg.Master) == 0:
		return nil, errors.New("callback secrets: Master is required")
	case cfg.DB == nil:
		return nil, errors.New("callback secrets: DB is required")
	case cfg.Grace < 0 || cfg.CacheTTL < 0:
		return nil, errors.New("callback secrets: Grace and CacheTTL must not be negative")
	}
	cfg.Grace = cmp.Or(cfg.Grace, DefaultCallbackSecretGrace)
	cfg.CacheTTL = cmp.Or(cfg.CacheTTL, DefaultCallbackSecretCacheTTL)
	return &CallbackSecrets{cfg: cfg, now: time.Now, cache: make(map[string]cachedGeneration)}, nil
}

// secret is owner's secret of generation gen.
func (s *CallbackSecrets) secret(owner string, gen int64) []byte {
	if gen == 0 && owner == taskrunner.LocalTenant {
		return s.cfg.Master
	}
	return callback.DeriveSecret(s.cfg.Master, owner, gen)
}

// Signing returns the secrets that sign owner's callbacks now: its
// current one, then during a rotation's grace its previous one. What it
// read from the database it keeps for CacheTTL.
func (s *CallbackSecrets) Signing(ctx context.Context, owner string) ([][]byte, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[owner]
	s.mu.Unlock()
	if !ok || now.Sub(c.at) >= s.cfg.CacheTTL || now.Before(c.at) {
		gen, err := db.CallbackSecretGenerationOf(ctx, s.cfg.DB, owner)
		if err != nil {
			return nil, err
		}
		c = cachedGeneration{gen: gen, at: now}
		s.mu.Lock()
		if len(s.cache) >= maxCachedSecretOwners {
			clear(s.cache)
		}
		s.cache[owner] = c
		s.mu.Unlock()
	}
	out := [][]byte{s.secret(owner, c.gen.Generation)}
	if previousSigns(c.gen, now) {
		out = append(out, s.secret(owner, c.gen.Generation-1))
	}
	return out, nil
}

// previousSigns reports whether gen's previous secret still signs at now.
func previousSigns(gen db.CallbackSecretGeneration, now time.Time) bool {
	return gen.Generation > 0 && gen.PreviousUntil != nil && now.Before(*gen.PreviousUntil)
}

// Current is owner's secret as GET /callbacks/secret shows it, read from
// the database.
func (s *CallbackSecrets) Current(ctx context.Context, owner string) (taskrunner.CallbackSecret, error) {
	gen, err := db.CallbackSecretGenerationOf(ctx, s.cfg.DB, owner)
	if err != nil {
		return taskrunner.CallbackSecret{}, db.AsUnavailable(err)
	}
	return s.view(owner, gen), nil
}

// Rotate starts a rotation of owner's secret: a new one signs from now
// on, and the one it replaces signs too for Grace. It answers as Current.
func (s *CallbackSecrets) Rotate(ctx context.Context, owner string) (taskrunner.CallbackSecret, error) {
	gen, err := db.RotateCallbackSecret(ctx, s.cfg.DB, owner, s.now().Add(s.cfg.Grace))
	if err != nil {
		return taskrunner.CallbackSecret{}, db.AsUnavailable(err)
	}
	s.mu.Lock()
	delete(s.cache, owner) // this process signs with the new one at once
	s.mu.Unlock()
	return s.view(owner, gen), nil
}

func (s *CallbackSecrets) view(owner string, gen db.CallbackSecretGeneration) taskrunner.CallbackSecret {
	v := taskrunner.CallbackSecret{Secret: string(s.secret(owner, gen.Generation))}
	if previousSigns(gen, s.now()) {
		prev := string(s.secret(owner, gen.Generation-1))
		until := gen.PreviousUntil.UTC()
		v.Previous, v.PreviousExpiresAt = &prev, &until
	}
	return v
}
