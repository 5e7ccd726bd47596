//go:build !unix

package hostlock

import "os"

func tryLock(*os.File) (bool, error) { return false, errUnsupported }
