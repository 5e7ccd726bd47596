package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/protocol"
)

var parseURL = url.Parse

const jobsUsage = `Usage:
  coordinator jobs submit [flags] -queue Q SPEC.json|-   submit a job spec (JSON; "-" reads stdin)
  coordinator jobs get    [flags] -queue Q ID
  coordinator jobs list   [flags] -queue Q [-state S] [-repository R] [-before ID] [-limit N]
  coordinator jobs cancel [flags] -queue Q ID
  coordinator jobs retry  [flags] -queue Q ID
  coordinator jobs logs   [flags] -queue Q [-follow] [-tail BYTES] ID
`

type clientFlags struct {
	url, token, queue *string
}

func addClientFlags(fs *flag.FlagSet) clientFlags {
	return clientFlags{
		url:   envFlag(fs, "url", "EXECD_URL", "http://127.0.0.1:3080", "coordinator URL"),
		token: envFlag(fs, "token", "EXECD_API_TOKEN", "", "submission API token (api.accessToken of the site config)"),
		queue: envFlag(fs, "queue", "EXECD_QUEUE", "batches", "queue"),
	}
}

func (f clientFlags) client() (*jobsapi.Client, error) {
	if *f.token == "" {
		return nil, fmt.Errorf("no API token: pass -token or set EXECD_API_TOKEN to the site config's api.accessToken")
	}
	return &jobsapi.Client{BaseURL: *f.url, Token: *f.token}, nil
}

func jobs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, jobsUsage)
		return flag.ErrHelp
	}
	cmd := args[0]
	fs := flag.NewFlagSet("jobs "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	var (
		state, repo   *string
		before, limit *int
		follow        *bool
		tail          *int64
		files         *string
	)
	switch cmd {
	case "list":
		state = fs.String("state", "", "only jobs in this state")
		repo = fs.String("repository", "", "only jobs of this repository")
		before = fs.Int("before", 0, "page: jobs with ids below this")
		limit = fs.Int("limit", 50, "page size")
	case "logs":
		follow = fs.Bool("follow", false, "keep printing until the job finishes")
		tail = fs.Int64("tail", 0, "print only the last `bytes` of each entry's output (0: all of it)")
	case "submit":
		files = fs.String("files", "", "comma-separated PATH=LOCALFILE pairs to add to the spec's files")
	case "get", "cancel", "retry":
	default:
		fmt.Fprint(stderr, jobsUsage)
		return fmt.Errorf("jobs: unknown command %q", cmd)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	queue := *cf.queue
	switch cmd {
	case "submit":
		if fs.NArg() != 1 {
			return fmt.Errorf("jobs submit: want one SPEC.json argument (or - for stdin)")
		}
		req, err := readSpec(fs.Arg(0), *files)
		if err != nil {
			return err
		}
		job, err := c.Submit(ctx, queue, req)
		if err != nil {
			return err
		}
		return printJSON(stdout, job)
	case "list":
		l, err := c.List(ctx, queue, *state, *repo, *before, *limit)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tREPOSITORY\tQUEUED\tEXECUTOR\tFAILURE")
		for _, j := range l.Jobs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.State, j.Spec.RepositoryName, j.QueuedAt.Local().Format(time.DateTime), j.WorkerHostname, firstLine(j.FailureMessage))
		}
		if l.Next != "" {
			fmt.Fprintf(tw, "(more: -before %s)\n", l.Next)
		}
		return tw.Flush()
	}
	id, err := jobIDArg(fs)
	if err != nil {
		return err
	}
	switch cmd {
	case "get":
		job, err := c.Get(ctx, queue, id)
		if err != nil {
			return err
		}
		return printJSON(stdout, job)
	case "cancel":
		job, err := c.Cancel(ctx, queue, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "job %d: %s%s\n", job.ID, job.State, map[bool]string{true: " (cancel requested; the executor stops it as soon as it hears of it)"}[job.CancelRequested && job.State == "processing"])
		return nil
	case "retry":
		job, err := c.Retry(ctx, queue, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "job %d: %s\n", job.ID, job.State)
		return nil
	case "logs":
		if *tail < 0 {
			return fmt.Errorf("-tail %d: want a number of bytes, or 0 for all", *tail)
		}
		return printLogs(ctx, c, queue, id, *follow, *tail, stdout)
	}
	return nil
}

func jobIDArg(fs *flag.FlagSet) (int, error) {
	if fs.NArg() != 1 {
		return 0, fmt.Errorf("want one job ID argument")
	}
	id, err := strconv.Atoi(fs.Arg(0))
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("job ID %q: want a positive integer", fs.Arg(0))
	}
	return id, nil
}

func readSpec(path, files string) (jobsapi.SubmitRequest, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return jobsapi.SubmitRequest{}, fmt.Errorf("read spec: %w", err)
	}
	var req jobsapi.SubmitRequest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("spec %s: %w", path, err)
	}
	for _, pair := range strings.Split(files, ",") {
		if pair == "" {
			continue
		}
		dst, src, ok := strings.Cut(pair, "=")
		if !ok {
			return req, fmt.Errorf("-files: %q is not PATH=LOCALFILE", pair)
		}
		content, err := os.ReadFile(src)
		if err != nil {
			return req, fmt.Errorf("-files: %w", err)
		}
		if req.Files == nil {
			req.Files = map[string]protocol.VirtualFile{}
		}
		req.Files[dst] = protocol.VirtualFile{Content: content}
	}
	return req, nil
}

// printLogs prints a job's log entries, and with follow what they gain
// until the job finishes; each request asks only for what is new.
func printLogs(ctx context.Context, c *jobsapi.Client, queue string, id int, follow bool, tail int64, w io.Writer) error {
	var lp logPrinter
	for {
		logs, err := c.Logs(ctx, queue, id, lp.offsets(), tail)
		if err != nil {
			return err
		}
		lp.print(w, logs)
		tail = 0 // the tail was printed; the rest follows it
		done := logs.State != "queued" && logs.State != "processing"
		if !follow || done {
			fmt.Fprintf(w, "job %d: %s %s\n", id, logs.State, logs.FailureMessage)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// logPrinter prints a job's log entries as they grow, each line once.
type logPrinter struct {
	printed  map[int]int64 // entry id -> bytes of its output printed up to
	finished map[int]bool
}

// offsets are where each entry's output printed so far ends.
func (lp *logPrinter) offsets() map[int]int64 { return lp.printed }

func (lp *logPrinter) print(w io.Writer, logs jobsapi.Logs) {
	if lp.printed == nil {
		lp.printed, lp.finished = map[int]int64{}, map[int]bool{}
	}
	for _, e := range logs.Entries {
		if lp.finished[e.ID] {
			continue
		}
		n, started := lp.printed[e.ID]
		if started && e.OutLength < n {
			// The job was handed out again and its log began anew: print
			// this entry again from the next answer on.
			fmt.Fprintf(w, "== %s: the log restarted (the job was handed out again)\n", e.Key)
			delete(lp.printed, e.ID)
			continue
		}
		if !started {
			if lines := protocol.CommandLines(e.Key, e.Command); len(lines) == 1 {
				fmt.Fprintf(w, "== %s: %s\n", e.Key, lines[0])
			} else {
				fmt.Fprintf(w, "== %s:\n", e.Key)
				for _, l := range lines {
					fmt.Fprintf(w, "==   $ %s\n", l)
				}
			}
			if e.OutFrom > 0 {
				fmt.Fprintf(w, "== (%d earlier bytes not shown)\n", e.OutFrom)
			}
		}
		if end := e.OutFrom + int64(len(e.Out)); end > n {
			io.WriteString(w, e.Out[max(n-e.OutFrom, 0):])
			n = end
		}
		lp.printed[e.ID] = n
		if e.ExitCode != nil {
			fmt.Fprintf(w, "== %s: exit %d after %dms\n", e.Key, *e.ExitCode, deref(e.DurationMs))
			lp.finished[e.ID] = true
		}
	}
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func executors(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("executors", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	execs, err := c.Executors(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTIVE\tNAME\tQUEUES\tOS/ARCH\tVERSION\tLAST SEEN")
	for _, e := range execs {
		dot := "-"
		if e.Active {
			dot = "●"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\t%s ago\n", dot, e.Name, strings.Join(e.Queues, ","), e.OS, e.Architecture, e.ExecutorVersion, time.Since(e.LastSeenAt).Round(time.Second))
	}
	return tw.Flush()
}
