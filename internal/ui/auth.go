package ui

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/execd/execd/internal/store"
)

// Sign-in and sessions.
//
// An administrator signs in with the site config's api.accessToken (compared
// in constant time). The server then stores a session in the database
// (the hash of a random 256-bit id, so every coordinator sharing the
// database knows it and a leaked database opens none), and sends the id as
// the cookie execd_session: HttpOnly, SameSite=Lax, Secure when the
// request came over HTTPS (directly or, behind a proxy, by
// X-Forwarded-Proto). A session ends at sign-out, after the session TTL,
// and as soon as api.accessToken changes: it remembers the hash of the
// token it was opened with.
//
// Every POST but the sign-in itself carries the session's CSRF token in the
// hidden field "csrf" and is refused (403) without it; a POST whose Origin
// header names another host is refused too.

const (
	cookieName = "execd_session"
	csrfField  = "csrf"
)

// session is one signed-in browser.
type session struct {
	id      string // the cookie's value; the store keeps its hash
	csrf    string
	expires time.Time
}

// randomToken returns 32 random bytes, base64url-encoded.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b)
}

// session returns the request's live session, if it has one whose token is
// still the site config's api.accessToken.
func (s *Server) session(r *http.Request) (*session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil, false
	}
	id := store.HashToken(c.Value)
	stored, err := s.store.Session(r.Context(), id, s.now())
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.logger.Error("ui: read session", "err", err)
		}
		return nil, false
	}
	token := s.config.Current().APIAccessToken
	if token == "" {
		return nil, false
	}
	want := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(stored.TokenHash[:], want[:]) != 1 {
		s.deleteSession(r.Context(), id)
		return nil, false
	}
	return &session{id: c.Value, csrf: stored.CSRF, expires: stored.Expires}, true
}

func (s *Server) deleteSession(ctx context.Context, id store.TokenHash) {
	if err := s.store.DeleteSession(ctx, id); err != nil {
		s.logger.Error("ui: delete session", "err", err)
	}
}

// view wraps a GET handler: without a session it redirects to the sign-in
// page, which comes back here.
func (s *Server) view(h func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.session(r)
		if !ok {
			http.Redirect(w, r, "/ui/sign-in?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		h(w, r, sess)
	})
}

// stream wraps an event-stream handler: without a session it answers 401.
func (s *Server) stream(h func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.session(r)
		if !ok {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		h(w, r, sess)
	})
}

// form wraps a POST handler: it needs a session, a same-origin request and
// the session's CSRF token, else it answers 403.
func (s *Server) form(h func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		sess, ok := s.session(r)
		if !ok {
			s.errorPage(w, r, nil, http.StatusForbidden, "Your session has ended. Sign in again, then repeat the action.")
			return
		}
		if !sameOrigin(r) {
			s.errorPage(w, r, sess, http.StatusForbidden, "This form was sent from another site; it was refused.")
			return
		}
		if err := r.ParseForm(); err != nil {
			s.errorPage(w, r, sess, http.StatusBadRequest, "The form could not be read: "+err.Error())
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.PostForm.Get(csrfField)), []byte(sess.csrf)) != 1 {
			s.errorPage(w, r, sess, http.StatusForbidden, "The form lacked a valid CSRF token; reload the page and try again.")
			return
		}
		h(w, r, sess)
	})
}

// sameOrigin reports whether r's Origin header, if any, names r's host.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not sent by every browser for same-origin forms
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// secure reports whether the cookie should be Secure: the request came
// over HTTPS. (Not from externalURL: an admin who reaches the coordinator
// over plain HTTP, through a tunnel say, could not sign in.)
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

type signInData struct {
	Next     string
	Disabled bool
}

func (s *Server) handleSignInPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.session(r); ok {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.renderSignIn(w, r, http.StatusOK, "")
}

func (s *Server) renderSignIn(w http.ResponseWriter, r *http.Request, code int, msg string) {
	data := signInData{Next: safeNext(r.FormValue("next")), Disabled: s.config.Current().APIAccessToken == ""}
	s.render(w, r, code, "sign-in.html", page{Title: "Sign in", Error: msg, Data: data})
}

func (s *Server) handleSignIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if !sameOrigin(r) {
		s.errorPage(w, r, nil, http.StatusForbidden, "This form was sent from another site; it was refused.")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.renderSignIn(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	token := s.config.Current().APIAccessToken
	if token == "" {
		s.renderSignIn(w, r, http.StatusServiceUnavailable, "Sign-in is disabled until api.accessToken is set in the site config.")
		return
	}
	given := r.PostForm.Get("token")
	if subtle.ConstantTimeCompare([]byte(given), []byte(token)) != 1 {
		s.logger.Warn("ui sign-in refused: wrong token", "remote", r.RemoteAddr)
		s.renderSignIn(w, r, http.StatusUnauthorized, "That is not the API access token (api.accessToken in the site config).")
		return
	}
	sess := &session{id: randomToken(), csrf: randomToken(), expires: s.now().Add(s.sessionTTL)}
	stored := store.Session{ID: store.HashToken(sess.id), CSRF: sess.csrf, TokenHash: sha256.Sum256([]byte(token)), Expires: sess.expires}
	if err := s.store.CreateSession(r.Context(), stored, s.now()); err != nil {
		s.logger.Error("ui: create session", "err", err)
		s.renderSignIn(w, r, http.StatusInternalServerError, "The session could not be stored; see the coordinator's log.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    sess.id,
		Path:     "/",
		Expires:  sess.expires,
		HttpOnly: true,
		Secure:   secure(r),
		SameSite: http.SameSiteLaxMode,
	})
	s.logger.Info("ui sign-in", "remote", r.RemoteAddr)
	http.Redirect(w, r, safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
}

func (s *Server) handleSignOut(w http.ResponseWriter, r *http.Request, sess *session) {
	s.deleteSession(r.Context(), store.HashToken(sess.id))
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/ui/sign-in", http.StatusSeeOther)
}

// safeNext keeps a post-sign-in redirect on this site's UI.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "/ui/sign-") || strings.ContainsAny(next, "\\\r\n") {
		return "/ui/executors"
	}
	return next
}
