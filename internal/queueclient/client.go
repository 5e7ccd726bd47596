// Package queueclient is the executor's client of the executor queue API
// (shared/protocol.md): dequeue (with our long-poll), heartbeat, log
// entries and marking jobs. It speaks to our coordinator or to a
// Sourcegraph instance alike.
package queueclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/execd/execd/internal/protocol"
)

// ErrUnknownJob is returned by job operations answered 404: the
// coordinator no longer thinks this executor owns the job.
var ErrUnknownJob = errors.New("job unknown to the coordinator")

// StatusError is a response other than the one expected.
type StatusError struct {
	Method, Path string
	Code         int
	Body         string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: unexpected status %d: %s", e.Method, e.Path, e.Code, strings.TrimSpace(e.Body))
}

// Client talks to one coordinator. It is safe for concurrent use.
type Client struct {
	BaseURL      string // the frontend URL, without /.executors
	Secret       string // executors.accessToken
	ExecutorName string
	HTTP         *http.Client

	// extensions are those the last successful answer named (see
	// protocol.ExtensionsHeader): none until one is heard, so a stock
	// instance gets only the reference's requests.
	extensions atomic.Pointer[[]string]
}

// Supports reports whether the coordinator's last successful answer named
// the extension (protocol.ExtLongPoll, ...).
func (c *Client) Supports(extension string) bool {
	exts := c.extensions.Load()
	return exts != nil && slices.Contains(*exts, extension)
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// request sends body as JSON and returns the response status and body.
// jobToken, when set, authenticates as that job (Bearer plus headers);
// otherwise the shared secret is used.
func (c *Client) request(ctx context.Context, path string, header http.Header, jobID int, jobToken string, body any) (int, []byte, error) {
	var rd io.Reader
	method, contentType := http.MethodGet, ""
	switch b := body.(type) {
	case nil:
	case rawBody:
		rd, method, contentType = bytes.NewReader(b.data), http.MethodPost, b.contentType
	default:
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd, method, contentType = bytes.NewReader(data), http.MethodPost, "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+"/.executors"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if jobToken != "" {
		req.Header.Set("Authorization", "Bearer "+jobToken)
	} else {
		req.Header.Set("Authorization", "token-executor "+c.Secret)
	}
	if jobID != 0 {
		req.Header.Set("X-Sourcegraph-Job-ID", strconv.Itoa(jobID))
		req.Header.Set("X-Sourcegraph-Executor-Name", c.ExecutorName)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Only an answer of the coordinator itself: an error page of a
		// proxy in front of it says nothing of what it supports.
		exts := protocol.ParseExtensions(resp.Header)
		c.extensions.Store(&exts)
	}
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// rawBody is a request body sent as it is, not as JSON.
type rawBody struct {
	contentType string
	data        []byte
}

// TestAuth checks that the coordinator accepts the secret.
func (c *Client) TestAuth(ctx context.Context) error {
	code, body, err := c.request(ctx, "/test/auth", nil, 0, "", nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return &StatusError{"GET", "/test/auth", code, string(body)}
	}
	return nil
}

// DequeueOptions are the executor's resources and the long-poll wait.
type DequeueOptions struct {
	Version   string
	NumCPUs   int
	Memory    string
	DiskSpace string
	// Wait asks our coordinator to hold the request until a job arrives or
	// Wait passes. It is sent only to a coordinator that offers
	// protocol.ExtLongPoll; others answer at once.
	Wait time.Duration
}

// Dequeue asks for a job from queues (one queue: the single-queue route).
// ok is false when there is none.
func (c *Client) Dequeue(ctx context.Context, queues []string, opts DequeueOptions) (job protocol.Job, ok bool, err error) {
	req := protocol.DequeueRequest{ExecutorName: c.ExecutorName, Version: opts.Version, NumCPUs: opts.NumCPUs, Memory: opts.Memory, DiskSpace: opts.DiskSpace}
	path := "/queue/dequeue"
	if len(queues) == 1 {
		path = "/queue/" + queues[0] + "/dequeue"
	} else {
		req.Queues = queues
	}
	if c.extensions.Load() == nil {
		// Nothing heard yet: learn what the coordinator offers first
		// (with a route of the reference), so that this dequeue already
		// asks ours for a version 2 payload.
		if err := c.TestAuth(ctx); err != nil {
			return job, false, err
		}
	}
	header := http.Header{}
	if opts.Wait > 0 && c.Supports(protocol.ExtLongPoll) {
		header.Set(protocol.WaitHeader, opts.Wait.String())
	}
	if c.Supports(protocol.ExtJobV2) {
		header.Set(protocol.JobVersionHeader, "2")
	}
	code, body, err := c.request(ctx, path, header, 0, "", req)
	if err != nil {
		return job, false, err
	}
	switch code {
	case http.StatusNoContent:
		return job, false, nil
	case http.StatusOK:
		if err := json.Unmarshal(body, &job); err != nil {
			return job, false, fmt.Errorf("decode dequeued job: %w", err)
		}
		if len(queues) == 1 {
			job.Queue = queues[0]
		}
		return job, true, nil
	}
	return job, false, &StatusError{"POST", path, code, string(body)}
}

// Heartbeat reports the executor alive with the jobs it holds (uids,
// "<id>-<queue>") and returns which the coordinator knows and which to
// cancel, as uids too. With wait, our coordinator holds the answer until
// one of jobs is canceled or wait passes (when it offers
// protocol.ExtHeartbeatWait); others answer at once.
func (c *Client) Heartbeat(ctx context.Context, queues []string, req protocol.HeartbeatRequest, jobs []protocol.Job, wait time.Duration) (protocol.HeartbeatResponse, error) {
	req.Version = protocol.HeartbeatVersion2
	req.ExecutorName = c.ExecutorName
	path := "/queue/heartbeat"
	single := len(queues) == 1
	if single {
		path = "/queue/" + queues[0] + "/heartbeat"
		req.JobIDs = []string{}
		for _, j := range jobs {
			req.JobIDs = append(req.JobIDs, strconv.Itoa(j.ID))
		}
	} else {
		req.QueueNames = queues
		byQueue := map[string][]string{}
		for _, j := range jobs {
			byQueue[j.Queue] = append(byQueue[j.Queue], strconv.Itoa(j.ID))
		}
		for _, q := range queues {
			if ids := byQueue[q]; len(ids) > 0 {
				req.JobIDsByQueue = append(req.JobIDsByQueue, protocol.QueueJobIDs{QueueName: q, JobIDs: ids})
			}
		}
	}
	var header http.Header
	if wait > 0 && c.Supports(protocol.ExtHeartbeatWait) {
		header = http.Header{protocol.WaitHeader: {wait.String()}}
	}
	code, body, err := c.request(ctx, path, header, 0, "", req)
	if err != nil {
		return protocol.HeartbeatResponse{}, err
	}
	if code != http.StatusOK {
		return protocol.HeartbeatResponse{}, &StatusError{"POST", path, code, string(body)}
	}
	var resp protocol.HeartbeatResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return resp, fmt.Errorf("decode heartbeat response: %w", err)
	}
	if single {
		for i, id := range resp.KnownIDs {
			resp.KnownIDs[i] = protocol.JobUID(atoi(id), queues[0])
		}
		for i, id := range resp.CancelIDs {
			resp.CancelIDs[i] = protocol.JobUID(atoi(id), queues[0])
		}
	}
	return resp, nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// jobCall posts a job operation authenticated by the job's token.
func (c *Client) jobCall(ctx context.Context, job protocol.Job, op string, body any, want int) ([]byte, error) {
	path := "/queue/" + job.Queue + "/" + op
	code, data, err := c.request(ctx, path, nil, job.ID, job.Token, body)
	if err != nil {
		return nil, err
	}
	if code == http.StatusNotFound {
		return nil, fmt.Errorf("%s job %d: %w", op, job.ID, ErrUnknownJob)
	}
	if code != want {
		return nil, &StatusError{"POST", path, code, string(data)}
	}
	return data, nil
}

func (c *Client) op(job protocol.Job) protocol.JobOperationRequest {
	return protocol.JobOperationRequest{ExecutorName: c.ExecutorName, JobID: job.ID}
}

// AddLogEntry adds a log entry to job and returns its id.
func (c *Client) AddLogEntry(ctx context.Context, job protocol.Job, entry protocol.ExecutionLogEntry) (int, error) {
	data, err := c.jobCall(ctx, job, "addExecutionLogEntry", protocol.AddExecutionLogEntryRequest{JobOperationRequest: c.op(job), ExecutionLogEntry: entry}, http.StatusOK)
	if err != nil {
		return 0, err
	}
	var id int
	if err := json.Unmarshal(data, &id); err != nil {
		return 0, fmt.Errorf("decode log entry id: %w", err)
	}
	return id, nil
}

// UpdateLogEntry replaces log entry id of job.
func (c *Client) UpdateLogEntry(ctx context.Context, job protocol.Job, id int, entry protocol.ExecutionLogEntry) error {
	_, err := c.jobCall(ctx, job, "updateExecutionLogEntry", protocol.UpdateExecutionLogEntryRequest{JobOperationRequest: c.op(job), EntryID: id, ExecutionLogEntry: entry}, http.StatusNoContent)
	return err
}

// ErrAppendUnsupported is returned by AppendLogEntry when the coordinator
// has no appendExecutionLogEntry route (a stock Sourcegraph instance): a
// 404 or 405 whose body does not say "unknown job", which ours always says
// when it answers 404 for a job.
var ErrAppendUnsupported error = appendUnsupportedError{}

type appendUnsupportedError struct{}

func (appendUnsupportedError) Error() string {
	return "the coordinator does not support appending to log entries"
}

// AppendUnsupported marks the error for clients that do not import this
// package (job.Streamer).
func (appendUnsupportedError) AppendUnsupported() bool { return true }

// OffsetMismatchError is AppendLogEntry's answer to a 409: the offset was
// not the stored output's length, Length.
type OffsetMismatchError struct {
	Length int64
}

func (e *OffsetMismatchError) Error() string {
	return fmt.Sprintf("log entry offset mismatch: the coordinator has %d bytes", e.Length)
}

// ServerLength is the length of the output the coordinator holds.
func (e *OffsetMismatchError) ServerLength() int64 { return e.Length }

// AppendLogEntry appends out to log entry id of job at offset (our
// extension) and returns the output's new length. exitCode and durationMs,
// when set, finish the entry. Errors: *OffsetMismatchError on 409,
// ErrAppendUnsupported when the coordinator does not offer
// protocol.ExtLogAppend (then nothing is sent) or the route is missing, ErrUnknownJob when the
// coordinator disowned the job.
func (c *Client) AppendLogEntry(ctx context.Context, job protocol.Job, id int, offset int64, out []byte, exitCode, durationMs *int) (int64, error) {
	const op = "appendExecutionLogEntry"
	if !c.Supports(protocol.ExtLogAppend) {
		return 0, fmt.Errorf("%s job %d: %w", op, job.ID, ErrAppendUnsupported)
	}
	q := url.Values{
		"executorName": {c.ExecutorName},
		"jobId":        {strconv.Itoa(job.ID)},
		"entryId":      {strconv.Itoa(id)},
		"offset":       {strconv.FormatInt(offset, 10)},
	}
	if exitCode != nil {
		q.Set("exitCode", strconv.Itoa(*exitCode))
	}
	if durationMs != nil {
		q.Set("durationMs", strconv.Itoa(*durationMs))
	}
	path := "/queue/" + job.Queue + "/" + op
	code, data, err := c.request(ctx, path+"?"+q.Encode(), nil, job.ID, job.Token, rawBody{protocol.ContentTypeLogOutput, out})
	if err != nil {
		return 0, err
	}
	var resp protocol.AppendExecutionLogEntryResponse
	switch code {
	case http.StatusOK, http.StatusConflict:
		if err := json.Unmarshal(data, &resp); err != nil {
			return 0, fmt.Errorf("%s job %d: decode response: %w", op, job.ID, err)
		}
		if code == http.StatusConflict {
			return resp.Length, &OffsetMismatchError{Length: resp.Length}
		}
		return resp.Length, nil
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		if code == http.StatusNotFound && strings.Contains(string(data), "unknown job") {
			return 0, fmt.Errorf("%s job %d: %w", op, job.ID, ErrUnknownJob)
		}
		return 0, fmt.Errorf("%s job %d: %w", op, job.ID, ErrAppendUnsupported)
	}
	return 0, &StatusError{"POST", path, code, string(data)}
}

// MarkComplete finishes job successfully.
func (c *Client) MarkComplete(ctx context.Context, job protocol.Job) error {
	_, err := c.jobCall(ctx, job, "markComplete", protocol.MarkCompleteRequest{JobOperationRequest: c.op(job)}, http.StatusNoContent)
	return err
}

// MarkErrored finishes an attempt of job with a retryable error.
func (c *Client) MarkErrored(ctx context.Context, job protocol.Job, message string) error {
	_, err := c.jobCall(ctx, job, "markErrored", protocol.MarkErroredRequest{JobOperationRequest: c.op(job), ErrorMessage: message}, http.StatusNoContent)
	return err
}

// MarkFailed finishes job with a permanent error.
func (c *Client) MarkFailed(ctx context.Context, job protocol.Job, message string) error {
	_, err := c.jobCall(ctx, job, "markFailed", protocol.MarkErroredRequest{JobOperationRequest: c.op(job), ErrorMessage: message}, http.StatusNoContent)
	return err
}

// GetFile downloads the file blob bucket/key that job's files entries
// name, authenticated by the job's token. The caller closes the reader.
func (c *Client) GetFile(ctx context.Context, job protocol.Job, bucket, key string) (io.ReadCloser, error) {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	path := "/files/" + url.PathEscape(bucket) + "/" + strings.Join(segs, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.BaseURL, "/")+"/.executors"+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+job.Token)
	req.Header.Set("X-Sourcegraph-Job-ID", strconv.Itoa(job.ID))
	req.Header.Set("X-Sourcegraph-Executor-Name", c.ExecutorName)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, &StatusError{"GET", path, resp.StatusCode, string(data)}
	}
	return resp.Body, nil
}
