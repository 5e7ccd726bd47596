package filesapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/coordinator"
	"github.com/execd/execd/internal/filesapi"
	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/queueapi"
	"github.com/execd/execd/internal/queueclient"
	"github.com/execd/execd/internal/siteconfig"
	"github.com/execd/execd/internal/store"
	"github.com/execd/execd/internal/store/postgres/pgtest"
	"github.com/execd/execd/internal/store/sqlite"
)

const (
	execSecret = "executor-secret-0123456789"
	apiToken   = "api-token-0123456789abcdef"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// serve starts a coordinator on database and returns its URL.
func serve(t *testing.T, database string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "site-config.json")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`{"executors.accessToken": %q, "api.accessToken": %q}`, execSecret, apiToken)), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.New(context.Background(), coordinator.Options{DataDir: dir, SiteConfigPath: cfg, Database: database, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(func() { srv.Close(); c.Close() })
	return srv.URL
}

// call sends one request and returns the response and its body.
func call(t *testing.T, method, url string, headers map[string]string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

var apiAuth = map[string]string{"Authorization": "token " + apiToken}

func TestAPI_PutGet(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		url := serve(t, db)
		binary := []byte{0, 1, 2, 0, 255}
		tests := []struct {
			name, bucket, key string
			content           []byte
		}{
			{"text", "batches", "hello.txt", []byte("hello\n")},
			{"nested key", "batches", "ws/1/steps.json", []byte(`{"a": 1}`)},
			{"escaped key", "batches", "dir with space/ü.txt", []byte("unicode")},
			{"binary", "blobs", "bin", binary},
			{"empty", "blobs", "empty", []byte{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				path := jobsapi.FilePath(tt.bucket, tt.key)
				resp, body := call(t, "PUT", url+path, apiAuth, bytes.NewReader(tt.content))
				if resp.StatusCode != http.StatusCreated {
					t.Fatalf("PUT %s = %d %s, want 201", path, resp.StatusCode, body)
				}
				var f jobsapi.File
				if err := json.Unmarshal([]byte(body), &f); err != nil {
					t.Fatal(err)
				}
				if f.Bucket != tt.bucket || f.Key != tt.key || f.Size != int64(len(tt.content)) || time.Since(f.ModifiedAt) > time.Minute {
					t.Errorf("PUT answer = %+v, want bucket %q key %q size %d modified now", f, tt.bucket, tt.key, len(tt.content))
				}
				if loc := resp.Header.Get("Location"); loc != path {
					t.Errorf("Location = %q, want %q", loc, path)
				}
				resp, body = call(t, "GET", url+path, apiAuth, nil)
				if resp.StatusCode != http.StatusOK || body != string(tt.content) {
					t.Errorf("GET %s = %d %q, want 200 %q", path, resp.StatusCode, body, tt.content)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
					t.Errorf("Content-Type = %q, want application/octet-stream", ct)
				}
				resp, body = call(t, "HEAD", url+path, apiAuth, nil)
				if resp.StatusCode != http.StatusOK || body != "" || resp.ContentLength != int64(len(tt.content)) || resp.Header.Get("Last-Modified") == "" {
					t.Errorf("HEAD %s = %d, length %d, Last-Modified %q, want 200, %d, set", path, resp.StatusCode, resp.ContentLength, resp.Header.Get("Last-Modified"), len(tt.content))
				}
			})
		}

		// Replacing a file.
		api := &jobsapi.Client{BaseURL: url, Token: apiToken}
		if _, err := api.PutFile(t.Context(), "batches", "hello.txt", strings.NewReader("replaced")); err != nil {
			t.Fatal(err)
		}
		if got := download(t, api, "batches", "hello.txt"); got != "replaced" {
			t.Errorf("after replacing: %q, want %q", got, "replaced")
		}
	})
}

func download(t *testing.T, api *jobsapi.Client, bucket, key string) string {
	t.Helper()
	r, err := api.GetFile(t.Context(), bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAPI_Errors(t *testing.T) {
	url := serve(t, "")
	call(t, "PUT", url+"/api/files/b/k", apiAuth, strings.NewReader("x"))
	tests := []struct {
		name, method, path string
		headers            map[string]string
		want               int
		wantBody           string
	}{
		{"no token", "PUT", "/api/files/b/k", nil, http.StatusUnauthorized, "api.accessToken"},
		{"wrong token", "GET", "/api/files/b/k", map[string]string{"Authorization": "token wrong-token-0123456789abcdef"}, http.StatusUnauthorized, "api.accessToken"},
		{"executor secret is not the API token", "GET", "/api/files/b/k", map[string]string{"Authorization": "token " + execSecret}, http.StatusUnauthorized, ""},
		{"missing", "GET", "/api/files/b/nope", apiAuth, http.StatusNotFound, "b/nope"},
		{"missing bucket", "GET", "/api/files/nope/k", apiAuth, http.StatusNotFound, "nope/k"},
		{"dot-dot key", "PUT", "/api/files/b/a%2F..%2Fk", apiAuth, http.StatusBadRequest, "clean relative path"},
		{"bad bucket", "PUT", "/api/files/-b/k", apiAuth, http.StatusBadRequest, "bucket"},
		{"no key", "PUT", "/api/files/b/", apiAuth, http.StatusBadRequest, "key: empty"},
		{"method", "POST", "/api/files/b/k", apiAuth, http.StatusMethodNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := call(t, tt.method, url+tt.path, tt.headers, strings.NewReader("content"))
			if resp.StatusCode != tt.want || !strings.Contains(body, tt.wantBody) {
				t.Errorf("%s %s = %d %q, want %d containing %q", tt.method, tt.path, resp.StatusCode, body, tt.want, tt.wantBody)
			}
		})
	}
}

// TestAPI_TooLarge checks the size cap, announced (Content-Length) or not
// (chunked), on a Server with a small cap.
func TestAPI_TooLarge(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "execd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := siteconfig.Static(&siteconfig.Config{APIAccessToken: apiToken, ExecutorsAccessToken: execSecret})
	s := filesapi.New(filesapi.Options{Files: st, Jobs: st, Config: cfg, Auth: queueapi.New(queueapi.Options{Store: st, Config: cfg}), MaxSize: 1 << 20})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	tests := []struct {
		name    string
		size    int
		chunked bool
		want    int
	}{
		{"at the limit", 1 << 20, false, http.StatusCreated},
		{"over, announced", 1<<20 + 1, false, http.StatusRequestEntityTooLarge},
		{"over, chunked", 2 << 20, true, http.StatusRequestEntityTooLarge},
		{"under, chunked", 1000, true, http.StatusCreated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(make([]byte, tt.size))
			if tt.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			resp, got := call(t, "PUT", srv.URL+"/api/files/b/big", apiAuth, body)
			if resp.StatusCode != tt.want {
				t.Fatalf("PUT of %d bytes = %d %q, want %d", tt.size, resp.StatusCode, got, tt.want)
			}
			if tt.want == http.StatusRequestEntityTooLarge && !strings.Contains(got, "limit is 1 MiB") {
				t.Errorf("413 body %q does not name the limit", got)
			}
		})
	}
}

// TestExecutor_Get checks what executors may read: with a job token, only
// blobs their job lists; with the shared secret, any.
func TestExecutor_Get(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		url := serve(t, db)
		api := &jobsapi.Client{BaseURL: url, Token: apiToken}
		for key, content := range map[string]string{"mine.txt": "mine", "dir/also-mine": "also", "theirs.txt": "theirs"} {
			if _, err := api.PutFile(t.Context(), "bkt", key, strings.NewReader(content)); err != nil {
				t.Fatal(err)
			}
		}
		_, err := api.Submit(t.Context(), "batches", jobsapi.SubmitRequest{Spec: store.Spec{
			Files: map[string]protocol.VirtualFile{
				"a.txt":       {Bucket: "bkt", Key: "mine.txt"},
				"b/c.txt":     {Bucket: "bkt", Key: "dir/also-mine"},
				"missing.txt": {Bucket: "bkt", Key: "not-uploaded"},
			},
			CliSteps: []protocol.CliStep{{Commands: []string{"true"}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		qc := &queueclient.Client{BaseURL: url, Secret: execSecret, ExecutorName: "ex-files"}
		job, ok, err := qc.Dequeue(t.Context(), []string{"batches"}, queueclient.DequeueOptions{Version: "5.0.0"})
		if err != nil || !ok {
			t.Fatalf("dequeue: %v, %v", ok, err)
		}

		// Through the queue client, as the executor does.
		for _, tt := range []struct{ key, want string }{{"mine.txt", "mine"}, {"dir/also-mine", "also"}} {
			r, err := qc.GetFile(t.Context(), job, "bkt", tt.key)
			if err != nil {
				t.Fatalf("GetFile(bkt, %s): %v", tt.key, err)
			}
			got, _ := io.ReadAll(r)
			r.Close()
			if string(got) != tt.want {
				t.Errorf("GetFile(bkt, %s) = %q, want %q", tt.key, got, tt.want)
			}
		}

		token := map[string]string{"Authorization": "Bearer " + job.Token, "X-Sourcegraph-Job-ID": fmt.Sprint(job.ID), "X-Sourcegraph-Executor-Name": "ex-files"}
		secret := map[string]string{"Authorization": "token-executor " + execSecret}
		tests := []struct {
			name, method, path string
			headers            map[string]string
			want               int
			wantBody           string
		}{
			{"token, listed", "GET", "/.executors/files/bkt/mine.txt", token, http.StatusOK, "mine"},
			{"token, listed, HEAD", "HEAD", "/.executors/files/bkt/mine.txt", token, http.StatusOK, ""},
			{"token, not listed", "GET", "/.executors/files/bkt/theirs.txt", token, http.StatusForbidden, "does not list"},
			{"token, not listed, HEAD", "HEAD", "/.executors/files/bkt/theirs.txt", token, http.StatusForbidden, ""},
			{"token, listed but not uploaded", "GET", "/.executors/files/bkt/not-uploaded", token, http.StatusNotFound, "not found"},
			{"shared secret, any", "GET", "/.executors/files/bkt/theirs.txt", secret, http.StatusOK, "theirs"},
			{"shared secret, missing", "GET", "/.executors/files/bkt/nope", secret, http.StatusNotFound, "not found"},
			{"no credentials", "GET", "/.executors/files/bkt/mine.txt", nil, http.StatusUnauthorized, ""},
			{"unknown token", "GET", "/.executors/files/bkt/mine.txt", map[string]string{"Authorization": "Bearer 00", "X-Sourcegraph-Job-ID": fmt.Sprint(job.ID), "X-Sourcegraph-Executor-Name": "ex-files"}, http.StatusUnauthorized, ""},
			{"wrong job id", "GET", "/.executors/files/bkt/mine.txt", map[string]string{"Authorization": "Bearer " + job.Token, "X-Sourcegraph-Job-ID": fmt.Sprint(job.ID + 1), "X-Sourcegraph-Executor-Name": "ex-files"}, http.StatusForbidden, ""},
			{"API token is not an executor credential", "GET", "/.executors/files/bkt/mine.txt", apiAuth, http.StatusUnauthorized, ""},
			{"PUT is not an executor route", "PUT", "/.executors/files/bkt/mine.txt", secret, http.StatusMethodNotAllowed, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp, body := call(t, tt.method, url+tt.path, tt.headers, nil)
				if resp.StatusCode != tt.want || !strings.Contains(body, tt.wantBody) {
					t.Errorf("%s %s = %d %q, want %d containing %q", tt.method, tt.path, resp.StatusCode, body, tt.want, tt.wantBody)
				}
			})
		}

		// The token dies with the job.
		if err := qc.MarkComplete(t.Context(), job); err != nil {
			t.Fatal(err)
		}
		if _, err := qc.GetFile(t.Context(), job, "bkt", "mine.txt"); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("GetFile after the job completed: %v, want a 401", err)
		}
	})
}

// TestSharedDatabase uploads through one coordinator and reads through
// another on the same PostgreSQL database.
func TestSharedDatabase(t *testing.T) {
	db := pgtest.URL(t)
	a := &jobsapi.Client{BaseURL: serve(t, db), Token: apiToken}
	b := &jobsapi.Client{BaseURL: serve(t, db), Token: apiToken}
	if _, err := a.PutFile(t.Context(), "shared", "k", strings.NewReader("through a")); err != nil {
		t.Fatal(err)
	}
	if got := download(t, b, "shared", "k"); got != "through a" {
		t.Errorf("read through b = %q, want %q", got, "through a")
	}
}
