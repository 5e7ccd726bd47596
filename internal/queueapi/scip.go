package queueapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"time"
)

// UploadBucket is the file-store bucket code-intel index uploads go to.
const UploadBucket = "scip-uploads"

// maxUpload caps a code-intel index upload.
const maxUpload = 256 << 20

// Uploads stores code-intel index uploads.
type Uploads interface {
	PutFile(ctx context.Context, bucket, key string, content []byte, now time.Time) error
}

// handleUpload stores a code-intel index (POST /scip/upload, executor
// auth) as a blob of [UploadBucket], answering {"id": "<key>"}. The
// reference hands it to its code-intel worker; ours keeps it for the
// producer to fetch with GET /api/files/scip-uploads/<key>.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	if s.uploads == nil {
		http.Error(w, "code-intel uploads are not supported by this coordinator's store", http.StatusNotImplemented)
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxUpload))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, "upload larger than 256 MiB", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read upload: "+err.Error(), http.StatusBadRequest)
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	key := hex.EncodeToString(b) + ".scip"
	if err := s.uploads.PutFile(r.Context(), UploadBucket, key, data, s.now()); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.logger.Info("code-intel index uploaded", "key", key, "bytes", len(data),
		"repository", r.URL.Query().Get("repository"), "commit", r.URL.Query().Get("commit"))
	writeJSON(w, http.StatusOK, map[string]string{"id": key})
}
