package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/execd/execd/internal/store"
)

// CreateSession stores a UI session, and deletes expired ones.
func (s *Store) CreateSession(ctx context.Context, sess store.Session, now time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM ui_sessions WHERE expires_at <= ?`, now.UnixNano()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO ui_sessions (id_sha256, csrf, token_sha256, expires_at) VALUES (?, ?, ?, ?)`,
			sess.ID[:], sess.CSRF, sess.TokenHash[:], sess.Expires.UnixNano())
		return err
	})
	if err != nil {
		return fmt.Errorf("create ui session: %w", err)
	}
	return nil
}

// Session returns the live UI session whose id hashes to id.
func (s *Store) Session(ctx context.Context, id store.TokenHash, now time.Time) (store.Session, error) {
	var (
		sess    = store.Session{ID: id}
		token   []byte
		expires int64
	)
	err := s.read.QueryRowContext(ctx, `SELECT csrf, token_sha256, expires_at FROM ui_sessions WHERE id_sha256 = ? AND expires_at > ?`,
		id[:], now.UnixNano()).Scan(&sess.CSRF, &token, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return sess, store.ErrNotFound
	}
	if err != nil {
		return sess, fmt.Errorf("ui session: %w", err)
	}
	copy(sess.TokenHash[:], token)
	sess.Expires = fromNanos(expires)
	return sess, nil
}

// DeleteSession deletes a UI session.
func (s *Store) DeleteSession(ctx context.Context, id store.TokenHash) error {
	if _, err := s.write.ExecContext(ctx, `DELETE FROM ui_sessions WHERE id_sha256 = ?`, id[:]); err != nil {
		return fmt.Errorf("delete ui session: %w", err)
	}
	return nil
}
