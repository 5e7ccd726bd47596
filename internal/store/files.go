package store

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// File describes a stored file blob.
type File struct {
	Bucket     string
	Key        string
	Size       int64
	ModifiedAt time.Time
}

// FileStore keeps the file blobs that jobs' files entries name by bucket
// and key. Blobs live in the database, so every coordinator sharing it
// serves the same ones. Both implementations of [Store] implement it; its
// conformance suite is storetest.RunFiles.
type FileStore interface {
	// PutFile stores content under bucket and key, replacing any file
	// there, with modification time now.
	PutFile(ctx context.Context, bucket, key string, content []byte, now time.Time) error
	// GetFile returns a file and its content (non-nil, empty for an empty
	// file). ErrFileNotFound when absent.
	GetFile(ctx context.Context, bucket, key string) (File, []byte, error)
	// StatFile returns a file without reading its content. ErrFileNotFound
	// when absent.
	StatFile(ctx context.Context, bucket, key string) (File, error)
}

// MaxFileKeyLength is the longest file key, in bytes.
const MaxFileKeyLength = 1024

var bucketRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// CheckFileName reports why bucket and key cannot name a file, or nil.
// A bucket is 1 to 63 letters, digits and ._- starting with a letter or
// digit. A key is a clean relative slash-separated path (no empty, "." or
// ".." segments, no leading or trailing '/') of valid UTF-8 without
// control characters, at most [MaxFileKeyLength] bytes: keys appear in
// URL paths, which HTTP servers clean.
func CheckFileName(bucket, key string) error {
	if !bucketRE.MatchString(bucket) {
		return fmt.Errorf("bucket %q: use 1 to 63 letters, digits and ._- starting with a letter or digit", bucket)
	}
	switch {
	case key == "":
		return fmt.Errorf("key: empty")
	case len(key) > MaxFileKeyLength:
		return fmt.Errorf("key %.40q...: longer than %d bytes", key, MaxFileKeyLength)
	case !utf8.ValidString(key):
		return fmt.Errorf("key %q: not valid UTF-8", key)
	case strings.ContainsFunc(key, unicode.IsControl):
		return fmt.Errorf("key %q: contains control characters", key)
	case strings.HasPrefix(key, "/") || path.Clean(key) != key || key == "." || key == ".." || strings.HasPrefix(key, "../"):
		return fmt.Errorf("key %q: must be a clean relative path (no leading or trailing '/', no empty, '.' or '..' segments)", key)
	}
	return nil
}
