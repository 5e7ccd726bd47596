package jobsapi

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/execd/execd/internal/store"
)

// Validate checks a job spec, naming the field at fault.
func Validate(req SubmitRequest) error {
	if len(req.DockerSteps) == 0 && len(req.CliSteps) == 0 {
		return fmt.Errorf("dockerSteps, cliSteps: a job needs at least one step")
	}
	if req.MaxAttempts < 0 {
		return fmt.Errorf("maxAttempts: %d is negative", req.MaxAttempts)
	}
	if err := relativePath("repositoryDirectory", req.RepositoryDirectory, true); err != nil {
		return err
	}
	if req.RepositoryName == "" && (req.Commit != "" || req.FetchTags || req.ShallowClone || len(req.SparseCheckout) > 0) {
		return fmt.Errorf("repositoryName: missing, but commit, fetchTags, shallowClone or sparseCheckout is set")
	}
	if req.RepositoryName != "" && req.Commit == "" {
		return fmt.Errorf("commit: missing; name the commit (a full SHA or a ref) of %q to check out", req.RepositoryName)
	}
	for i, st := range req.DockerSteps {
		field := fmt.Sprintf("dockerSteps[%d]", i)
		switch {
		case strings.TrimSpace(st.Image) == "":
			return fmt.Errorf("%s.image: missing; name the container image the step runs in", field)
		case len(st.Commands) == 0:
			return fmt.Errorf("%s.commands: missing; give the commands the step runs", field)
		}
		if err := checkStep(field, st.Dir, st.Env); err != nil {
			return err
		}
	}
	for i, st := range req.CliSteps {
		field := fmt.Sprintf("cliSteps[%d]", i)
		if len(st.Commands) == 0 {
			return fmt.Errorf("%s.command: missing; give the command's arguments", field)
		}
		if err := checkStep(field, st.Dir, st.Env); err != nil {
			return err
		}
	}
	paths := make([]string, 0, len(req.Files))
	for p := range req.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		field := fmt.Sprintf("files[%q]", p)
		if err := relativePath(field, p, false); err != nil {
			return err
		}
		f := req.Files[p]
		if (f.Bucket == "") != (f.Key == "") {
			return fmt.Errorf("%s: bucket and key go together; set both or neither", field)
		}
		if f.Bucket != "" && len(f.Content) > 0 {
			return fmt.Errorf("%s: has both content and bucket/key; set one", field)
		}
		if f.Bucket != "" {
			if err := store.CheckFileName(f.Bucket, f.Key); err != nil {
				return fmt.Errorf("%s: %w", field, err)
			}
		}
	}
	for secret, replacement := range req.RedactedValues {
		if secret == "" {
			return fmt.Errorf("redactedValues: an empty string cannot be redacted (replacement %q)", replacement)
		}
	}
	return nil
}

func checkStep(field, dir string, env []string) error {
	if err := relativePath(field+".dir", dir, true); err != nil {
		return err
	}
	for j, kv := range env {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return fmt.Errorf("%s.env[%d]: %q is not NAME=value", field, j, kv)
		}
	}
	return nil
}

// relativePath rejects a path that is absolute or leaves the workspace.
func relativePath(field, p string, emptyOK bool) error {
	if p == "" {
		if emptyOK {
			return nil
		}
		return fmt.Errorf("%s: the path is empty", field)
	}
	if strings.HasPrefix(p, "/") || strings.Contains(p, "\x00") {
		return fmt.Errorf("%s: %q must be a relative path inside the workspace", field, p)
	}
	clean := path.Clean(p)
	if clean == "." && !emptyOK {
		return fmt.Errorf("%s: %q names the workspace itself, not a file in it", field, p)
	}
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return fmt.Errorf("%s: %q escapes the workspace; use a path inside it", field, p)
	}
	return nil
}
