package shell

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloseInheritedOnExec marks every descriptor above stderr close-on-exec,
// so that none reaches a program this process starts unless it is passed
// on purpose (exec.Cmd's ExtraFiles). Go opens its own descriptors so;
// those a process inherited (an executor started holding a descriptor of
// a root-only file) are not, and would reach every step.
func CloseInheritedOnExec() error {
	// Linux 5.11 and later do it in one call.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return nil
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}
