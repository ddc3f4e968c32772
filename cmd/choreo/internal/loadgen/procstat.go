package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of the CPU times in
// /proc/<pid>/stat: 100 on every Linux architecture Go runs on.
const clockTicks = 100

// ErrNoProcStats is returned where /proc cannot be read (not Linux, or the
// process is gone).
var ErrNoProcStats = errors.New("process statistics need /proc (Linux)")

// ProcStat is a process's CPU time and memory at one instant.
type ProcStat struct {
	CPU     time.Duration // user + system time since the process started
	RSS     int64         // resident set size, bytes
	PeakRSS int64         // the highest RSS so far (VmHWM), bytes
}

// ReadProcStat reads the CPU time and memory of process pid from /proc.
func ReadProcStat(pid int) (ProcStat, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ProcStat{}, fmt.Errorf("%w: %v", ErrNoProcStats, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return ProcStat{}, fmt.Errorf("%w: unreadable /proc/%d/stat", ErrNoProcStats, pid)
	}
	fields := bytes.Fields(stat[i+1:])
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return ProcStat{}, fmt.Errorf("%w: short /proc/%d/stat", ErrNoProcStats, pid)
	}
	utime, err1 := strconv.ParseInt(string(fields[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(fields[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return ProcStat{}, fmt.Errorf("%w: unreadable cpu times in /proc/%d/stat", ErrNoProcStats, pid)
	}
	ps := ProcStat{CPU: time.Duration(utime+stime) * time.Second / clockTicks}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return ProcStat{}, fmt.Errorf("%w: %v", ErrNoProcStats, err)
	}
	for line := range bytes.Lines(status) {
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			ps.RSS = kib(line)
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			ps.PeakRSS = kib(line)
		}
	}
	return ps, nil
}

// kib parses "VmRSS:	  12345 kB" into bytes.
func kib(line []byte) int64 {
	f := bytes.Fields(line)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(string(f[1]), 10, 64)
	return n << 10
}
