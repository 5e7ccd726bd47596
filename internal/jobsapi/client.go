package jobsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/execd/execd/internal/store"
)

// Client calls the submission API.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:3080
	Token   string // api.accessToken
	HTTP    *http.Client
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, method, path, out)
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// send sends req with the API token and decodes a JSON answer into out.
func (c *Client) send(req *http.Request, method, path string, out any) error {
	req.Header.Set("Authorization", "token "+c.Token)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return responseError(method, path, resp.Status, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// responseError describes an error answer, with its {"error": ...} message
// when it has one.
func responseError(method, path, status string, body []byte) error {
	var apiErr APIError
	if json.Unmarshal(body, &apiErr) == nil && apiErr.Error != "" {
		return fmt.Errorf("%s %s: %s: %s", method, path, status, apiErr.Error)
	}
	return fmt.Errorf("%s %s: %s: %s", method, path, status, strings.TrimSpace(string(body)))
}

// Submit enqueues a job.
func (c *Client) Submit(ctx context.Context, queue string, req SubmitRequest) (Job, error) {
	var j Job
	err := c.do(ctx, http.MethodPost, "/api/queues/"+url.PathEscape(queue)+"/jobs", req, &j)
	return j, err
}

// Get returns a job with its logs.
func (c *Client) Get(ctx context.Context, queue string, id int) (Job, error) {
	var j Job
	err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/queues/%s/jobs/%d", url.PathEscape(queue), id), nil, &j)
	return j, err
}

// GetState returns a job without its logs.
func (c *Client) GetState(ctx context.Context, queue string, id int) (Job, error) {
	var j Job
	err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/queues/%s/jobs/%d?logs=false", url.PathEscape(queue), id), nil, &j)
	return j, err
}

// Logs returns a job's state and the part of its log that from (entry id
// -> the first byte wanted) and tail (when positive, at most the last tail
// bytes of each entry) choose.
func (c *Client) Logs(ctx context.Context, queue string, id int, from map[int]int64, tail int64) (Logs, error) {
	q := url.Values{}
	if len(from) > 0 {
		pairs := make([]string, 0, len(from))
		for entry, off := range from {
			pairs = append(pairs, fmt.Sprintf("%d:%d", entry, off))
		}
		slices.Sort(pairs)
		q.Set("from", strings.Join(pairs, ","))
	}
	if tail > 0 {
		q.Set("tail", strconv.FormatInt(tail, 10))
	}
	path := fmt.Sprintf("/api/queues/%s/jobs/%d/logs", url.PathEscape(queue), id)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var l Logs
	err := c.do(ctx, http.MethodGet, path, nil, &l)
	return l, err
}

// List returns a page of jobs; state, repository and before may be empty/0.
func (c *Client) List(ctx context.Context, queue, state, repository string, before, limit int) (JobList, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if repository != "" {
		q.Set("repository", repository)
	}
	if before > 0 {
		q.Set("before", strconv.Itoa(before))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var l JobList
	err := c.do(ctx, http.MethodGet, "/api/queues/"+url.PathEscape(queue)+"/jobs?"+q.Encode(), nil, &l)
	return l, err
}

// Cancel cancels a job.
func (c *Client) Cancel(ctx context.Context, queue string, id int) (Job, error) {
	var j Job
	err := c.do(ctx, http.MethodPost, fmt.Sprintf("/api/queues/%s/jobs/%d/cancel", url.PathEscape(queue), id), nil, &j)
	return j, err
}

// Retry requeues a finished, unsuccessful job.
func (c *Client) Retry(ctx context.Context, queue string, id int) (Job, error) {
	var j Job
	err := c.do(ctx, http.MethodPost, fmt.Sprintf("/api/queues/%s/jobs/%d/retry", url.PathEscape(queue), id), nil, &j)
	return j, err
}

// Executors lists the executors.
func (c *Client) Executors(ctx context.Context) ([]Executor, error) {
	var out []Executor
	err := c.do(ctx, http.MethodGet, "/api/executors", nil, &out)
	return out, err
}

// File describes a stored file blob, as PUT /api/files/... answers.
type File struct {
	Bucket     string    `json:"bucket"`
	Key        string    `json:"key"`
	Size       int64     `json:"size"`
	ModifiedAt time.Time `json:"modifiedAt"`
}

// FilePath is the submission API path of a file blob.
func FilePath(bucket, key string) string {
	return "/api/files/" + url.PathEscape(bucket) + "/" + escapeKey(key)
}

// escapeKey escapes each segment of a slash-separated key.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// PutFile uploads content as the file bucket/key, replacing any file
// there, for jobs' files entries to name. Content whose size is known
// (bytes.Reader, strings.Reader, bytes.Buffer, a regular *os.File) is sent
// with a Content-Length, so a file over the coordinator's limit is refused
// before it is sent.
func (c *Client) PutFile(ctx context.Context, bucket, key string, content io.Reader) (File, error) {
	if err := store.CheckFileName(bucket, key); err != nil {
		return File{}, fmt.Errorf("put file: %w", err)
	}
	path := FilePath(bucket, key)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, strings.TrimSuffix(c.BaseURL, "/")+path, content)
	if err != nil {
		return File{}, err
	}
	if f, ok := content.(interface{ Stat() (fs.FileInfo, error) }); ok && req.ContentLength == 0 {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			req.ContentLength = fi.Size()
			if fi.Size() == 0 {
				req.Body = http.NoBody
			}
		}
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	var f File
	err = c.send(req, http.MethodPut, path, &f)
	return f, err
}

// GetFile downloads the file bucket/key. The caller closes the reader.
func (c *Client) GetFile(ctx context.Context, bucket, key string) (io.ReadCloser, error) {
	if err := store.CheckFileName(bucket, key); err != nil {
		return nil, fmt.Errorf("get file: %w", err)
	}
	path := FilePath(bucket, key)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.BaseURL, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "token "+c.Token)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, responseError(http.MethodGet, path, resp.Status, data)
	}
	return resp.Body, nil
}
