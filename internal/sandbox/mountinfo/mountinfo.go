// Package mountinfo reads the kernel's table of mounts
// (/proc/self/mountinfo), as the runtimes and their janitors need it.
package mountinfo

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// Points lists this mount namespace's mount points.
func Points() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT ...
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			points = append(points, Unescape(fields[4]))
		}
	}
	return points, sc.Err()
}

// Unescape undoes the octal escapes (\040 for a space...) of mountinfo
// paths.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
