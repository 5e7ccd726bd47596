package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/execd/execd/internal/protocol"
)

// fileMode is the mode of written files and directories (before the
// umask): executable, as the reference writes them, so that a script
// among a job's files runs as it is.
const fileMode = 0o755

// writeFiles writes files into the workspace, in path order: inline
// content, a blob fetched by bucket and key, or an empty file; parent
// directories are created; the modification time is set when given.
// A path that is absolute or leaves the workspace, once cleaned or
// through a symbolic link in the workspace, is refused.
func writeFiles(ctx context.Context, files map[string]protocol.VirtualFile, opts Options) error {
	if len(files) == 0 {
		return nil
	}
	// os.Root refuses to leave the workspace too, should a link appear
	// between the check and the write.
	root, err := os.OpenRoot(opts.Dir)
	if err != nil {
		return fmt.Errorf("open the workspace: %w", err)
	}
	defer root.Close()
	for _, p := range slices.Sorted(maps.Keys(files)) {
		rel, err := relativePath(opts.Dir, p, false)
		if err != nil {
			return wrapf(err, "job file")
		}
		if err := writeFile(ctx, root, rel, files[p], opts.Files); err != nil {
			return wrapf(err, "job file %q", p)
		}
	}
	return nil
}

func writeFile(ctx context.Context, root *os.Root, rel string, f protocol.VirtualFile, fetcher FileFetcher) error {
	if dir := filepath.Dir(rel); dir != "." {
		if err := root.MkdirAll(dir, fileMode); err != nil {
			return err
		}
	}
	var content io.Reader
	switch {
	case f.Bucket != "" || f.Key != "":
		if fetcher == nil {
			return fmt.Errorf("it is the blob %s/%s, but no FileFetcher was given to download it", f.Bucket, f.Key)
		}
		rc, err := fetcher.Fetch(ctx, f.Bucket, f.Key)
		if errors.Is(err, fs.ErrNotExist) {
			return &Error{Msg: fmt.Sprintf("the coordinator has no file %s/%s: upload it before submitting the job", f.Bucket, f.Key), Permanent: true, Err: err}
		}
		if err != nil {
			return fmt.Errorf("download %s/%s: %w", f.Bucket, f.Key, err)
		}
		defer rc.Close()
		content = rc
	default:
		content = bytes.NewReader(f.Content)
	}
	out, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fileMode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, content); err != nil {
		out.Close()
		if f.Bucket != "" {
			return fmt.Errorf("download %s/%s: %w", f.Bucket, f.Key, err)
		}
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if !f.ModifiedAt.IsZero() {
		if err := root.Chtimes(rel, f.ModifiedAt, f.ModifiedAt); err != nil {
			return fmt.Errorf("set its modification time: %w", err)
		}
	}
	return nil
}
