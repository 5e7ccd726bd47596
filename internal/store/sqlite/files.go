package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/execd/execd/internal/store"
)

var _ store.FileStore = (*Store)(nil)

// PutFile implements [store.FileStore].
func (s *Store) PutFile(ctx context.Context, bucket, key string, content []byte, now time.Time) error {
	if content == nil {
		content = []byte{}
	}
	_, err := s.write.ExecContext(ctx, `
		INSERT INTO files (bucket, key, content, modified_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (bucket, key) DO UPDATE SET content = excluded.content, modified_at = excluded.modified_at`,
		bucket, key, content, now.UnixNano())
	if err != nil {
		return fmt.Errorf("put file %s/%s: %w", bucket, key, err)
	}
	return nil
}

// GetFile implements [store.FileStore].
func (s *Store) GetFile(ctx context.Context, bucket, key string) (store.File, []byte, error) {
	f := store.File{Bucket: bucket, Key: key}
	var content []byte
	var modified int64
	err := s.read.QueryRowContext(ctx, `SELECT content, modified_at FROM files WHERE bucket = ? AND key = ?`, bucket, key).Scan(&content, &modified)
	if errors.Is(err, sql.ErrNoRows) {
		return f, nil, store.ErrFileNotFound
	}
	if err != nil {
		return f, nil, fmt.Errorf("get file %s/%s: %w", bucket, key, err)
	}
	if content == nil {
		content = []byte{}
	}
	f.Size, f.ModifiedAt = int64(len(content)), fromNanos(modified)
	return f, content, nil
}

// StatFile implements [store.FileStore].
func (s *Store) StatFile(ctx context.Context, bucket, key string) (store.File, error) {
	f := store.File{Bucket: bucket, Key: key}
	var modified int64
	err := s.read.QueryRowContext(ctx, `SELECT length(content), modified_at FROM files WHERE bucket = ? AND key = ?`, bucket, key).Scan(&f.Size, &modified)
	if errors.Is(err, sql.ErrNoRows) {
		return f, store.ErrFileNotFound
	}
	if err != nil {
		return f, fmt.Errorf("stat file %s/%s: %w", bucket, key, err)
	}
	f.ModifiedAt = fromNanos(modified)
	return f, nil
}
