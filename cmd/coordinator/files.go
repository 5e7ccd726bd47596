package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/execd/execd/internal/jobsapi"
)

const filesUsage = `Usage:
  coordinator files put [flags] BUCKET KEY LOCALFILE|-   upload a file blob for jobs' files entries ("-" reads stdin)
  coordinator files get [flags] BUCKET KEY [LOCALFILE]   download one (default: to stdout)

A job names an uploaded blob in its spec as
  "files": {"path/in/workspace": {"bucket": "BUCKET", "key": "KEY"}}
`

func files(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, filesUsage)
		return flag.ErrHelp
	}
	cmd := args[0]
	fs := flag.NewFlagSet("files "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := envFlag(fs, "url", "EXECD_URL", "http://127.0.0.1:3080", "coordinator URL")
	token := envFlag(fs, "token", "EXECD_API_TOKEN", "", "submission API token (api.accessToken of the site config)")
	switch cmd {
	case "put", "get":
	default:
		fmt.Fprint(stderr, filesUsage)
		return fmt.Errorf("files: unknown command %q", cmd)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *token == "" {
		return fmt.Errorf("no API token: pass -token or set EXECD_API_TOKEN to the site config's api.accessToken")
	}
	c := &jobsapi.Client{BaseURL: *url, Token: *token}
	switch cmd {
	case "put":
		if fs.NArg() != 3 {
			return fmt.Errorf("files put: want BUCKET KEY LOCALFILE (or - for stdin), got %d arguments", fs.NArg())
		}
		var in io.Reader = os.Stdin
		if name := fs.Arg(2); name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return fmt.Errorf("files put: %w", err)
			}
			defer f.Close()
			in = f
		}
		f, err := c.PutFile(ctx, fs.Arg(0), fs.Arg(1), in)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "uploaded %s/%s (%d bytes)\n", f.Bucket, f.Key, f.Size)
		return nil
	default: // get
		if fs.NArg() != 2 && fs.NArg() != 3 {
			return fmt.Errorf("files get: want BUCKET KEY [LOCALFILE], got %d arguments", fs.NArg())
		}
		body, err := c.GetFile(ctx, fs.Arg(0), fs.Arg(1))
		if err != nil {
			return err
		}
		defer body.Close()
		out := stdout
		if fs.NArg() == 3 && fs.Arg(2) != "-" {
			f, err := os.Create(fs.Arg(2))
			if err != nil {
				return fmt.Errorf("files get: %w", err)
			}
			defer f.Close()
			out = f
		}
		if _, err := io.Copy(out, body); err != nil {
			return fmt.Errorf("files get %s/%s: %w", fs.Arg(0), fs.Arg(1), err)
		}
		if f, ok := out.(*os.File); ok && out != stdout {
			return f.Close()
		}
		return nil
	}
}
