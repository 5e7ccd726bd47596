//go:build linux

package shell

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// chownTree gives root's tree to uid:gid, without following symbolic
// links, and returns how many files it changed. Regular files with several
// links are left alone: they may be shared with files outside the
// workspace (git clone --local hard-links objects), whose owner must not
// change.
func chownTree(root string, uid, gid int) (int, error) {
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
				return nil
			}
		}
		n++
		return os.Lchown(p, uid, gid)
	})
	return n, err
}
