package storetest

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/execd/execd/internal/store"
)

// RunFiles runs the conformance suite of [store.FileStore]. open returns a
// new, empty store and arranges for it to be closed when the test ends.
func RunFiles(t *testing.T, open func(t *testing.T) store.FileStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.FileStore)
	}{
		{"PutGet", testFilesPutGet},
		{"NotFound", testFilesNotFound},
		{"Replace", testFilesReplace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// RunFilesShared checks that a file put through one store is read through
// another on the same database, as coordinators sharing it need. open
// returns two stores on one new, empty database.
func RunFilesShared(t *testing.T, open func(t *testing.T) (a, b store.FileStore)) {
	t.Run("FilesAcrossStores", func(t *testing.T) {
		a, b := open(t)
		mustOK(t, a.PutFile(t.Context(), "bucket", "shared/key", []byte("from a"), t0))
		checkFile(t, b, "bucket", "shared/key", []byte("from a"), t0)
		mustOK(t, b.PutFile(t.Context(), "bucket", "shared/key", []byte("from b"), at(time.Second)))
		checkFile(t, a, "bucket", "shared/key", []byte("from b"), at(time.Second))
	})
}

func testFilesPutGet(t *testing.T, s store.FileStore) {
	big := make([]byte, 3<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	tests := []struct {
		name, bucket, key string
		content           []byte
	}{
		{"empty", "b", "empty", []byte{}},
		{"nil is empty", "b", "nil", nil},
		{"text", "b", "hello.txt", []byte("hello\n")},
		{"binary with NULs", "b", "bin", []byte{0, 1, 0, 255, 0}},
		{"nested key", "batch-changes", "a/b/c/d.json", []byte(`{"x": 1}`)},
		{"unicode key", "b", "ünï/çødé ✓", []byte("u")},
		{"key differing in case", "b", "HELLO.TXT", []byte("upper")},
		{"same key, other bucket", "other", "hello.txt", []byte("other bucket")},
		{"3 MiB", "b", "big", big},
	}
	for i, tt := range tests {
		mustOK(t, s.PutFile(t.Context(), tt.bucket, tt.key, tt.content, at(time.Duration(i)*time.Second)))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkFile(t, s, tt.bucket, tt.key, tt.content, at(time.Duration(i)*time.Second))
		})
	}
}

func testFilesNotFound(t *testing.T, s store.FileStore) {
	mustOK(t, s.PutFile(t.Context(), "b", "k", []byte("x"), t0))
	for _, bk := range [][2]string{{"b", "missing"}, {"missing", "k"}, {"b", "K"}, {"b", "k/"}, {"", ""}} {
		if _, _, err := s.GetFile(t.Context(), bk[0], bk[1]); !errors.Is(err, store.ErrFileNotFound) {
			t.Errorf("GetFile(%q, %q): got error %v, want ErrFileNotFound", bk[0], bk[1], err)
		}
		if _, err := s.StatFile(t.Context(), bk[0], bk[1]); !errors.Is(err, store.ErrFileNotFound) {
			t.Errorf("StatFile(%q, %q): got error %v, want ErrFileNotFound", bk[0], bk[1], err)
		}
	}
}

func testFilesReplace(t *testing.T, s store.FileStore) {
	mustOK(t, s.PutFile(t.Context(), "b", "k", []byte("first, longer content"), t0))
	mustOK(t, s.PutFile(t.Context(), "b", "k", []byte("second"), at(time.Minute)))
	checkFile(t, s, "b", "k", []byte("second"), at(time.Minute))
	mustOK(t, s.PutFile(t.Context(), "b", "k", nil, at(2*time.Minute)))
	checkFile(t, s, "b", "k", []byte{}, at(2*time.Minute))
}

// checkFile checks a file's content and metadata through GetFile and
// StatFile.
func checkFile(t *testing.T, s store.FileStore, bucket, key string, content []byte, modified time.Time) {
	t.Helper()
	f, got, err := s.GetFile(t.Context(), bucket, key)
	if err != nil {
		t.Fatalf("GetFile(%q, %q): %v", bucket, key, err)
	}
	if got == nil || !bytes.Equal(got, content) {
		t.Errorf("GetFile(%q, %q) content: got %d bytes (nil: %v), want %d", bucket, key, len(got), got == nil, len(content))
	}
	want := store.File{Bucket: bucket, Key: key, Size: int64(len(content)), ModifiedAt: modified}
	if f.Bucket != want.Bucket || f.Key != want.Key || f.Size != want.Size || !f.ModifiedAt.Equal(want.ModifiedAt) {
		t.Errorf("GetFile(%q, %q): got %+v, want %+v", bucket, key, f, want)
	}
	st, err := s.StatFile(t.Context(), bucket, key)
	if err != nil {
		t.Fatalf("StatFile(%q, %q): %v", bucket, key, err)
	}
	if st.Bucket != want.Bucket || st.Key != want.Key || st.Size != want.Size || !st.ModifiedAt.Equal(want.ModifiedAt) {
		t.Errorf("StatFile(%q, %q): got %+v, want %+v", bucket, key, st, want)
	}
}
