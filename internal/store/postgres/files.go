package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/execd/execd/internal/store"
)

var _ store.FileStore = (*Store)(nil)

// PutFile implements [store.FileStore].
func (s *Store) PutFile(ctx context.Context, bucket, key string, content []byte, now time.Time) error {
	if content == nil {
		content = []byte{}
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO files (bucket, key, content, modified_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (bucket, key) DO UPDATE SET content = excluded.content, modified_at = excluded.modified_at`,
		bucket, key, content, now)
	if err != nil {
		return fmt.Errorf("put file %s/%s: %w", bucket, key, err)
	}
	return nil
}

// GetFile implements [store.FileStore].
func (s *Store) GetFile(ctx context.Context, bucket, key string) (store.File, []byte, error) {
	f := store.File{Bucket: bucket, Key: key}
	var content []byte
	err := s.pool.QueryRow(ctx, `SELECT content, modified_at FROM files WHERE bucket = $1 AND key = $2`, bucket, key).Scan(&content, &f.ModifiedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return f, nil, store.ErrFileNotFound
	}
	if err != nil {
		return f, nil, fmt.Errorf("get file %s/%s: %w", bucket, key, err)
	}
	if content == nil {
		content = []byte{}
	}
	f.Size, f.ModifiedAt = int64(len(content)), f.ModifiedAt.UTC()
	return f, content, nil
}

// StatFile implements [store.FileStore].
func (s *Store) StatFile(ctx context.Context, bucket, key string) (store.File, error) {
	f := store.File{Bucket: bucket, Key: key}
	err := s.pool.QueryRow(ctx, `SELECT octet_length(content), modified_at FROM files WHERE bucket = $1 AND key = $2`, bucket, key).Scan(&f.Size, &f.ModifiedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return f, store.ErrFileNotFound
	}
	if err != nil {
		return f, fmt.Errorf("stat file %s/%s: %w", bucket, key, err)
	}
	f.ModifiedAt = f.ModifiedAt.UTC()
	return f, nil
}
