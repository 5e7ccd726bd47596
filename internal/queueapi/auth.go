package queueapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/execd/execd/internal/store"
)

const (
	schemeExecutor = "token-executor"
	schemeJob      = "Bearer"

	headerJobID        = "X-Sourcegraph-Job-ID"
	headerExecutorName = "X-Sourcegraph-Executor-Name"

	// knownTTL is how long an executor found in the store is trusted to
	// exist without asking again: executors are never deleted while active.
	knownTTL = time.Minute
)

// authorization splits an Authorization header into scheme and token; it
// writes a 401 and returns ok=false when the header is malformed.
func authorization(w http.ResponseWriter, r *http.Request, schemes ...string) (scheme, token string, ok bool) {
	if v := r.Header.Get("Authorization"); v != "" {
		parts := strings.Split(v, " ")
		if len(parts) != 2 {
			http.Error(w, fmt.Sprintf("HTTP Authorization request header value must be of the form '%s TOKEN'", strings.Join(schemes, " TOKEN' or '")), http.StatusUnauthorized)
			return "", "", false
		}
		scheme, token = parts[0], parts[1]
		known := false
		for _, s := range schemes {
			known = known || s == scheme
		}
		if !known {
			http.Error(w, fmt.Sprintf("unrecognized HTTP Authorization request header scheme (supported values: %q)", schemes), http.StatusUnauthorized)
			return "", "", false
		}
	}
	if token == "" {
		http.Error(w, "no token value in the HTTP Authorization request header", http.StatusUnauthorized)
		return "", "", false
	}
	return scheme, token, true
}

// secretOK compares a presented secret with the configured one in constant
// time.
func secretOK(presented, configured string) bool {
	return subtle.ConstantTimeCompare([]byte(presented), []byte(configured)) == 1
}

// executorAuth admits requests bearing the executors' shared secret.
func (s *Server) executorAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secret := s.config.Current().ExecutorsAccessToken
		if secret == "" {
			http.Error(w, "Executors are not configured on this instance: set executors.accessToken in the site config", http.StatusInternalServerError)
			return
		}
		_, token, ok := authorization(w, r, schemeExecutor)
		if !ok {
			return
		}
		if !secretOK(token, secret) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Scope is what a job-token request must be for: the job's queue, or its
// repository (git routes). Both empty: any live job; the caller checks more.
type Scope struct {
	Queue      string
	Repository string
}

// JobCaller is who a job-authenticated request comes from. JobID is 0 when
// the executors' shared secret was used instead of a job token.
type JobCaller struct {
	JobID        int
	Queue        string
	Repository   string
	ExecutorName string
}

type jobCallerKey struct{}

// jobAuth admits requests to the queue's job routes.
func (s *Server) jobAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, ok := s.AuthorizeJob(w, r, Scope{Queue: r.PathValue("queue")})
		if !ok {
			return
		}
		if caller.JobID != 0 {
			r = r.WithContext(context.WithValue(r.Context(), jobCallerKey{}, caller))
		}
		next.ServeHTTP(w, r)
	})
}

// AuthorizeJob authenticates a request made with a job's own token
// (Bearer, plus the job id and executor name headers), scoped to scope and
// a known executor; or, for backward compatibility, with the executors'
// shared secret. When it returns false it has written the response (the
// reference's codes: 400 for missing headers, 401 for an unknown token,
// 403 for a token used outside its scope).
func (s *Server) AuthorizeJob(w http.ResponseWriter, r *http.Request, scope Scope) (JobCaller, bool) {
	secret := s.config.Current().ExecutorsAccessToken
	if secret == "" {
		http.Error(w, "Executors are not configured on this instance: set executors.accessToken in the site config", http.StatusInternalServerError)
		return JobCaller{}, false
	}
	scheme, token, ok := authorization(w, r, schemeJob, schemeExecutor)
	if !ok {
		return JobCaller{}, false
	}
	if scheme == schemeExecutor {
		if !secretOK(token, secret) {
			w.WriteHeader(http.StatusForbidden)
			return JobCaller{}, false
		}
		return JobCaller{ExecutorName: r.Header.Get(headerExecutorName)}, true
	}
	idHeader := r.Header.Get(headerJobID)
	if idHeader == "" {
		http.Error(w, "job ID not provided in header '"+headerJobID+"'", http.StatusBadRequest)
		return JobCaller{}, false
	}
	id, err := strconv.Atoi(idHeader)
	if err != nil {
		http.Error(w, "failed to parse Job ID in header '"+headerJobID+"': "+err.Error(), http.StatusBadRequest)
		return JobCaller{}, false
	}
	executor := r.Header.Get(headerExecutorName)
	if executor == "" {
		http.Error(w, "worker hostname cannot be empty: set header '"+headerExecutorName+"'", http.StatusBadRequest)
		return JobCaller{}, false
	}
	owner, err := s.store.TokenOwner(r.Context(), store.HashToken(token))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			http.Error(w, "invalid token", http.StatusUnauthorized)
		} else {
			s.writeError(w, r, err)
		}
		return JobCaller{}, false
	}
	switch {
	case owner.JobID != id:
		http.Error(w, "invalid token: it belongs to another job", http.StatusForbidden)
		return JobCaller{}, false
	case scope.Repository != "" && owner.RepositoryName != scope.Repository:
		http.Error(w, "invalid token: it belongs to another repository", http.StatusForbidden)
		return JobCaller{}, false
	case scope.Queue != "" && owner.Queue != scope.Queue:
		http.Error(w, "invalid token: it belongs to another queue", http.StatusForbidden)
		return JobCaller{}, false
	}
	known, err := s.executorKnown(r.Context(), executor)
	if err != nil {
		s.writeError(w, r, err)
		return JobCaller{}, false
	}
	if !known {
		http.Error(w, "invalid token: unknown executor "+strconv.Quote(executor), http.StatusForbidden)
		return JobCaller{}, false
	}
	return JobCaller{JobID: id, Queue: owner.Queue, Repository: owner.RepositoryName, ExecutorName: executor}, true
}

// executorKnown asks the store whether an executor exists, remembering
// positive answers for a while: it is on every job request's path.
func (s *Server) executorKnown(ctx context.Context, name string) (bool, error) {
	now := s.now()
	s.mu.Lock()
	at, ok := s.known[name]
	s.mu.Unlock()
	if ok && now.Sub(at) < knownTTL {
		return true, nil
	}
	exists, err := s.store.ExecutorExists(ctx, name)
	if err != nil || !exists {
		return false, err
	}
	s.mu.Lock()
	if len(s.known) > 100_000 {
		clear(s.known) // bound memory against a flood of names
	}
	s.known[name] = now
	s.mu.Unlock()
	return true, nil
}

// checkJobOperation verifies that a job request's body names the job and
// executor its token was issued for: a token for job A must not touch B.
func checkJobOperation(w http.ResponseWriter, r *http.Request, jobID int, executorName string) bool {
	caller, ok := r.Context().Value(jobCallerKey{}).(JobCaller)
	if !ok {
		return true // shared-secret authentication: trusted as a whole
	}
	if caller.JobID != jobID {
		http.Error(w, "invalid token: the body's jobId is not the job of the token", http.StatusForbidden)
		return false
	}
	if caller.ExecutorName != executorName {
		http.Error(w, "the body's executorName does not match header '"+headerExecutorName+"'", http.StatusForbidden)
		return false
	}
	return true
}
