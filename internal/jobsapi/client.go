package jobsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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
	req.Header.Set("Authorization", "token "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var apiErr APIError
		if json.Unmarshal(data, &apiErr) == nil && apiErr.Error != "" {
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, apiErr.Error)
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
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
