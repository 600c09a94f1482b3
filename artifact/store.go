// Package artifact is taskrunner's MinIO store for files attached to or
// produced by tasks.
package artifact

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// DefaultPingTimeout bounds a readiness check.
const DefaultPingTimeout = 2 * time.Second

// maxRetries is how many times minio-go tries a request.
const maxRetries = 2

// Config locates MinIO. User and Password are secrets: they are never
// logged or shown in errors.
type Config struct {
	Endpoint string // host:port
	User     string
	Password string
	Bucket   string
	Secure   bool
}

// Store keeps artifacts in one MinIO bucket.
type Store struct {
	client *minio.Client
	bucket string
}

// NewStore returns a Store for cfg. It does not connect until first used.
func NewStore(cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("MINIO_ENDPOINT and MINIO_BUCKET are required")
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.User, cfg.Password, ""),
		Secure: cfg.Secure,
		// minio-go retries a failed request ten times by default: with
		// MinIO down, a client would wait many seconds for its 503.
		MaxRetries: maxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("MINIO_ENDPOINT: %w", err)
	}
	return &Store{client: client, bucket: cfg.Bucket}, nil
}

// Client is the underlying minio-go client.
func (s *Store) Client() *minio.Client { return s.client }

// Bucket is the store's bucket name.
func (s *Store) Bucket() string { return s.bucket }

// EnsureBucket creates the bucket if it is missing.
func (s *Store) EnsureBucket(ctx context.Context) error {
	exists, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("check bucket %s: %w", s.bucket, err)
	}
	if exists {
		return nil
	}
	if err := s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{}); err != nil {
		// Another process may have made it in the meantime.
		if resp := minio.ToErrorResponse(err); resp.Code == "BucketAlreadyOwnedByYou" || resp.Code == "BucketAlreadyExists" {
			return nil
		}
		return fmt.Errorf("create bucket %s: %w", s.bucket, err)
	}
	return nil
}

// Ping checks that MinIO answers and the bucket is there, creating it if
// MinIO was down when the process started.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultPingTimeout)
	defer cancel()
	return s.EnsureBucket(ctx)
}
