package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/execd/execd/internal/store"
)

// CreateSession stores a UI session, and deletes expired ones.
func (s *Store) CreateSession(ctx context.Context, sess store.Session, now time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM ui_sessions WHERE expires_at <= $1`, now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO ui_sessions (id_sha256, csrf, token_sha256, expires_at) VALUES ($1, $2, $3, $4)`,
			sess.ID[:], sess.CSRF, sess.TokenHash[:], sess.Expires)
		return err
	})
	if err != nil {
		return fmt.Errorf("create ui session: %w", err)
	}
	return nil
}

// Session returns the live UI session whose id hashes to id.
func (s *Store) Session(ctx context.Context, id store.TokenHash, now time.Time) (store.Session, error) {
	sess := store.Session{ID: id}
	var token []byte
	err := s.pool.QueryRow(ctx, `SELECT csrf, token_sha256, expires_at FROM ui_sessions WHERE id_sha256 = $1 AND expires_at > $2`,
		id[:], now).Scan(&sess.CSRF, &token, &sess.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return sess, store.ErrNotFound
	}
	if err != nil {
		return sess, fmt.Errorf("ui session: %w", err)
	}
	copy(sess.TokenHash[:], token)
	sess.Expires = sess.Expires.UTC()
	return sess, nil
}

// DeleteSession deletes a UI session.
func (s *Store) DeleteSession(ctx context.Context, id store.TokenHash) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM ui_sessions WHERE id_sha256 = $1`, id[:]); err != nil {
		return fmt.Errorf("delete ui session: %w", err)
	}
	return nil
}
