package executor

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Host is what a machine offers the jobs' sandboxes.
type Host struct {
	CPUs int
	// MemoryBytes is the machine's memory; 0 when unknown.
	MemoryBytes int64
}

// ThisHost describes the machine the executor runs on.
func ThisHost() Host {
	return Host{CPUs: runtime.NumCPU(), MemoryBytes: memTotal("/proc/meminfo")}
}

// memTotal reads MemTotal from a meminfo file; 0 when it cannot.
func memTotal(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kib, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			return kib << 10
		}
	}
	return 0
}

// FitHost lowers the jobs' CPU and memory limits to what host has, and
// says what it changed. A limit above the machine would otherwise fail
// every container step (docker refuses more CPUs than the host has) or
// promise what no job can get; the reference's defaults (4 CPUs, 12G)
// exceed many small machines, so the executor runs on, with the warning
// in its log and in `executor validate`.
func (c *Config) FitHost(host Host) (warnings []string) {
	if host.CPUs > 0 && c.JobCPUs > host.CPUs {
		warnings = append(warnings, fmt.Sprintf("EXECUTOR_JOB_NUM_CPUS=%d exceeds the %d CPUs of this machine: jobs get %d", c.JobCPUs, host.CPUs, host.CPUs))
		c.JobCPUs = host.CPUs
	}
	if host.MemoryBytes > 0 && c.JobMemory > host.MemoryBytes {
		fit := formatSize(host.MemoryBytes)
		warnings = append(warnings, fmt.Sprintf("EXECUTOR_JOB_MEMORY=%s exceeds the %s of memory of this machine: jobs get %s", formatSize(c.JobMemory), fit, fit))
		c.JobMemory = host.MemoryBytes
		c.memoryText = fit
	}
	return warnings
}
