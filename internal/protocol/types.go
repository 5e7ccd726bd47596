package protocol

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Job is the payload of a dequeue response. Version selects the JSON shape:
// 2 encodes file contents as bytes (base64) and carries DockerAuthConfig;
// anything else is the v1 shape with string contents.
type Job struct {
	Version             int                    `json:"version,omitempty"`
	ID                  int                    `json:"id"`
	Queue               string                 `json:"queue,omitempty"`
	Token               string                 `json:"token"`
	RepositoryName      string                 `json:"repositoryName"`
	RepositoryDirectory string                 `json:"repositoryDirectory"`
	Commit              string                 `json:"commit"`
	FetchTags           bool                   `json:"fetchTags"`
	ShallowClone        bool                   `json:"shallowClone"`
	SparseCheckout      []string               `json:"sparseCheckout"`
	Files               map[string]VirtualFile `json:"files"`
	DockerSteps         []DockerStep           `json:"dockerSteps"`
	CliSteps            []CliStep              `json:"cliSteps"`
	RedactedValues      map[string]string      `json:"redactedValues"`
	DockerAuthConfig    DockerAuthConfig       `json:"dockerAuthConfig,omitempty"`
}

// UID is the job's identifier across queues, "<id>-<queue>", as multi-queue
// heartbeats use it. Without a queue it is the bare id.
func (j Job) UID() string { return JobUID(j.ID, j.Queue) }

// JobUID formats a job's identifier across queues.
func JobUID(id int, queue string) string {
	if queue == "" {
		return strconv.Itoa(id)
	}
	return strconv.Itoa(id) + "-" + queue
}

// ParseJobUID splits "<id>-<queue>" or "<id>" into its parts.
func ParseJobUID(uid string) (id int, queue string, err error) {
	idPart, queue, _ := strings.Cut(uid, "-")
	id, err = strconv.Atoi(idPart)
	if err != nil {
		return 0, "", fmt.Errorf("job id %q: want <id> or <id>-<queue>", uid)
	}
	return id, queue, nil
}

// VirtualFile is a file written into the workspace before the steps run.
// Content inline, or Bucket/Key naming a blob in the coordinator's file
// store; neither means an empty file.
type VirtualFile struct {
	Content    []byte    `json:"content,omitempty"`
	Bucket     string    `json:"bucket,omitempty"`
	Key        string    `json:"key,omitempty"`
	ModifiedAt time.Time `json:"modifiedAt,omitempty"`
}

type v1VirtualFile struct {
	Content    string    `json:"content,omitempty"`
	Bucket     string    `json:"bucket,omitempty"`
	Key        string    `json:"key,omitempty"`
	ModifiedAt time.Time `json:"modifiedAt,omitempty"`
}

// DockerStep runs commands in a container of Image.
type DockerStep struct {
	Key      string   `json:"key,omitempty"`
	Image    string   `json:"image"`
	Commands []string `json:"commands"`
	Dir      string   `json:"dir"`
	Env      []string `json:"env"`
}

// CliStep runs a src-cli command (the executor's "cli" steps).
type CliStep struct {
	Key      string   `json:"key,omitempty"`
	Commands []string `json:"command"`
	Dir      string   `json:"dir"`
	Env      []string `json:"env"`
}

// DockerAuthConfig is the subset of a docker CLI config that carries
// registry credentials.
type DockerAuthConfig struct {
	Auths map[string]DockerAuth `json:"auths,omitempty"`
}

// DockerAuth is one registry's credential: base64("user:password").
type DockerAuth struct {
	Auth []byte `json:"auth"`
}

// v1Job is the shape old executors (before 4.3.0) decode.
type v1Job struct {
	ID                  int                      `json:"id"`
	Token               string                   `json:"token"`
	Queue               string                   `json:"queue,omitempty"`
	RepositoryName      string                   `json:"repositoryName"`
	RepositoryDirectory string                   `json:"repositoryDirectory"`
	Commit              string                   `json:"commit"`
	FetchTags           bool                     `json:"fetchTags"`
	ShallowClone        bool                     `json:"shallowClone"`
	SparseCheckout      []string                 `json:"sparseCheckout"`
	Files               map[string]v1VirtualFile `json:"files"`
	DockerSteps         []DockerStep             `json:"dockerSteps"`
	CliSteps            []CliStep                `json:"cliSteps"`
	RedactedValues      map[string]string        `json:"redactedValues"`
}

// jobV2 has Job's fields without its methods, so encoding does not recurse.
type jobV2 Job

// MarshalJSON encodes the v2 shape when Version is 2 and the v1 shape
// otherwise.
func (j Job) MarshalJSON() ([]byte, error) {
	if j.Version == 2 {
		if j.Files == nil {
			j.Files = map[string]VirtualFile{}
		}
		return json.Marshal(jobV2(j))
	}
	v1 := v1Job{
		ID: j.ID, Token: j.Token, Queue: j.Queue,
		RepositoryName: j.RepositoryName, RepositoryDirectory: j.RepositoryDirectory,
		Commit: j.Commit, FetchTags: j.FetchTags, ShallowClone: j.ShallowClone,
		SparseCheckout: j.SparseCheckout, DockerSteps: j.DockerSteps,
		CliSteps: j.CliSteps, RedactedValues: j.RedactedValues,
		Files: make(map[string]v1VirtualFile, len(j.Files)),
	}
	for path, f := range j.Files {
		v1.Files[path] = v1VirtualFile{Content: string(f.Content), Bucket: f.Bucket, Key: f.Key, ModifiedAt: f.ModifiedAt}
	}
	return json.Marshal(v1)
}

// UnmarshalJSON decodes either shape, keyed on the "version" field.
func (j *Job) UnmarshalJSON(data []byte) error {
	var v struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	if v.Version == 2 {
		return json.Unmarshal(data, (*jobV2)(j))
	}
	var v1 v1Job
	if err := json.Unmarshal(data, &v1); err != nil {
		return err
	}
	*j = Job{
		Version: v.Version, ID: v1.ID, Token: v1.Token, Queue: v1.Queue,
		RepositoryName: v1.RepositoryName, RepositoryDirectory: v1.RepositoryDirectory,
		Commit: v1.Commit, FetchTags: v1.FetchTags, ShallowClone: v1.ShallowClone,
		SparseCheckout: v1.SparseCheckout, DockerSteps: v1.DockerSteps,
		CliSteps: v1.CliSteps, RedactedValues: v1.RedactedValues,
	}
	if v1.Files != nil {
		j.Files = make(map[string]VirtualFile, len(v1.Files))
		for path, f := range v1.Files {
			j.Files[path] = VirtualFile{Content: []byte(f.Content), Bucket: f.Bucket, Key: f.Key, ModifiedAt: f.ModifiedAt}
		}
	}
	return nil
}

// DequeueRequest asks for a job. Queues is set by multi-queue executors;
// single-queue executors name the queue in the route.
type DequeueRequest struct {
	Queues       []string `json:"queues,omitempty"`
	ExecutorName string   `json:"executorName"`
	Version      string   `json:"version"`
	NumCPUs      int      `json:"numCPUs,omitempty"`
	Memory       string   `json:"memory,omitempty"`
	DiskSpace    string   `json:"diskSpace,omitempty"`
}

// JobOperationRequest names the job and the executor that owns it.
type JobOperationRequest struct {
	ExecutorName string `json:"executorName"`
	JobID        int    `json:"jobId"`
}

// ExecutionLogEntry is one command's record in a job's log.
type ExecutionLogEntry struct {
	Key        string    `json:"key"`
	Command    []string  `json:"command"`
	StartTime  time.Time `json:"startTime"`
	ExitCode   *int      `json:"exitCode,omitempty"`
	Out        string    `json:"out,omitempty"`
	DurationMs *int      `json:"durationMs,omitempty"`
}

// AddExecutionLogEntryRequest adds an entry; the response body is its id.
type AddExecutionLogEntryRequest struct {
	JobOperationRequest
	ExecutionLogEntry
}

// UpdateExecutionLogEntryRequest replaces entry EntryID.
type UpdateExecutionLogEntryRequest struct {
	JobOperationRequest
	EntryID int `json:"entryId"`
	ExecutionLogEntry
}

// ContentTypeLogOutput is the body of appendExecutionLogEntry, our
// extension: the output to append, raw UTF-8, while these query
// parameters name the entry: executorName, jobId, entryId, offset
// (the output's length in bytes the executor last had acknowledged) and,
// to finish the entry in the same call, exitCode and durationMs. The
// answer is an AppendExecutionLogEntryResponse, with 200, or with 409 when
// offset is not the stored length. A raw body spares both sides the JSON
// escaping of the output, which costs more than storing it.
const ContentTypeLogOutput = "text/plain; charset=utf-8"

// AppendExecutionLogEntryResponse is the entry's output length in bytes.
type AppendExecutionLogEntryResponse struct {
	Length int64 `json:"length"`
}

// MarkCompleteRequest finishes a job successfully.
type MarkCompleteRequest struct {
	JobOperationRequest
}

// MarkErroredRequest finishes a job with an error (markErrored, markFailed).
type MarkErroredRequest struct {
	JobOperationRequest
	ErrorMessage string `json:"errorMessage"`
}

// QueueJobIDs lists the ids an executor holds for one queue.
type QueueJobIDs struct {
	QueueName string   `json:"queueName"`
	JobIDs    []string `json:"jobIds"`
}

// HeartbeatVersion2 is the heartbeat version current executors send.
const HeartbeatVersion2 = "V2"

// HeartbeatRequest reports an executor alive with the jobs it runs.
type HeartbeatRequest struct {
	Version       string        `json:"version"`
	ExecutorName  string        `json:"executorName"`
	JobIDs        []string      `json:"jobIds,omitempty"`
	JobIDsByQueue []QueueJobIDs `json:"jobIdsByQueue,omitempty"`
	QueueNames    []string      `json:"queueNames,omitempty"`

	OS              string `json:"os"`
	Architecture    string `json:"architecture"`
	DockerVersion   string `json:"dockerVersion"`
	ExecutorVersion string `json:"executorVersion"`
	GitVersion      string `json:"gitVersion"`
	IgniteVersion   string `json:"igniteVersion"`
	SrcCliVersion   string `json:"srcCliVersion"`

	PrometheusMetrics string `json:"prometheusMetrics"`

	// Runtime is the sandbox runtime the executor uses: our extension,
	// which Sourcegraph instances ignore.
	Runtime string `json:"runtime,omitempty"`
}

type heartbeatRequestWire HeartbeatRequest

// UnmarshalJSON accepts job ids as strings or, from old executors, numbers.
func (h *HeartbeatRequest) UnmarshalJSON(data []byte) error {
	var wire struct {
		heartbeatRequestWire
		JobIDs flexIDs `json:"jobIds"`
	}
	if err := json.Unmarshal(data, &wire); err != nil {
		return err
	}
	*h = HeartbeatRequest(wire.heartbeatRequestWire)
	h.JobIDs = wire.JobIDs
	return nil
}

// HeartbeatResponse says which of the executor's jobs the coordinator still
// assigns to it, and which of those to cancel.
type HeartbeatResponse struct {
	KnownIDs  []string `json:"knownIds"`
	CancelIDs []string `json:"cancelIds"`
}

// UnmarshalJSON accepts ids as strings or numbers, as old coordinators sent.
func (h *HeartbeatResponse) UnmarshalJSON(data []byte) error {
	var wire struct {
		KnownIDs  flexIDs `json:"knownIds"`
		CancelIDs flexIDs `json:"cancelIds"`
	}
	if err := json.Unmarshal(data, &wire); err != nil {
		return err
	}
	h.KnownIDs, h.CancelIDs = wire.KnownIDs, wire.CancelIDs
	return nil
}

// flexIDs decodes a JSON array of ids given as strings or integers.
type flexIDs []string

func (f *flexIDs) UnmarshalJSON(data []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	out := make([]string, 0, len(raw))
	for _, r := range raw {
		var s string
		if err := json.Unmarshal(r, &s); err == nil {
			out = append(out, s)
			continue
		}
		var n json.Number
		if err := json.Unmarshal(r, &n); err != nil {
			return fmt.Errorf("job id %s: want a string or an integer", r)
		}
		i, err := n.Int64()
		if err != nil {
			return fmt.Errorf("job id %s: want an integer", r)
		}
		out = append(out, strconv.FormatInt(i, 10))
	}
	*f = out
	return nil
}

// CommandLines is a log entry's command as a person reads it, a line
// each: a docker step's commands are shell lines, one per line; any other
// entry's command (git, src-cli) is one argv, joined by spaces.
func CommandLines(key string, command []string) []string {
	if strings.HasPrefix(key, "step.docker.") {
		return command
	}
	return []string{strings.Join(command, " ")}
}
