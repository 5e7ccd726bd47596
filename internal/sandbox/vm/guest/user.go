package guest

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// resolveUser turns a step's user ("", "uid", "uid:gid", "name",
// "name:group") into credentials and a home directory, reading the
// names from root's /etc/passwd and /etc/group. "" and "root" (or 0) run
// as root with a nil credential.
func resolveUser(root, user string) (*syscall.Credential, string, error) {
	if user == "" {
		return nil, "/root", nil
	}
	name, group, hasGroup := strings.Cut(user, ":")
	uid, gid, home := -1, -1, "/"
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		uid = int(n)
		if e, ok, err := lookup(filepath.Join(root, "etc/passwd"), func(f []string) bool { return f[2] == name }); err != nil {
			return nil, "", err
		} else if ok && len(e) >= 6 {
			gid, _ = strconv.Atoi(e[3])
			home = e[5]
		} else {
			gid = uid
		}
	} else {
		e, ok, err := lookup(filepath.Join(root, "etc/passwd"), func(f []string) bool { return f[0] == name })
		if err != nil {
			return nil, "", err
		}
		if !ok || len(e) < 6 {
			return nil, "", fmt.Errorf("the step's user %q is not in the image's /etc/passwd", name)
		}
		uid, _ = strconv.Atoi(e[2])
		gid, _ = strconv.Atoi(e[3])
		home = e[5]
	}
	if hasGroup {
		if n, err := strconv.ParseUint(group, 10, 32); err == nil {
			gid = int(n)
		} else {
			e, ok, err := lookup(filepath.Join(root, "etc/group"), func(f []string) bool { return f[0] == group })
			if err != nil {
				return nil, "", err
			}
			if !ok || len(e) < 3 {
				return nil, "", fmt.Errorf("the step's group %q is not in the image's /etc/group", group)
			}
			gid, _ = strconv.Atoi(e[2])
		}
	}
	if uid < 0 || gid < 0 {
		return nil, "", fmt.Errorf("the step's user %q has no valid uid:gid", user)
	}
	if uid == 0 && gid == 0 {
		if home == "/" {
			home = "/root"
		}
		return nil, home, nil
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, home, nil
}

// lookup returns the colon-separated fields of the first line of file
// that match; a missing file matches nothing.
func lookup(file string, match func([]string) bool) ([]string, bool, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 3 && match(fields) {
			return fields, true, nil
		}
	}
	return nil, false, sc.Err()
}
