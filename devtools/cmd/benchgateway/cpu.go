package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the kernel's USER_HZ, the unit of /proc/<pid>/stat times; it is 100 on every
// Linux this runs on.
const clockTick = 100

// cpu is CPU time used, split into time in the process's own code (user) and in the kernel
// on its behalf (system): a proxy on loopback spends much of its time in the kernel's TCP
// stack, which the split tells apart from its own work.
type cpu struct {
	user, system time.Duration
}

func (c cpu) total() time.Duration { return c.user + c.system }

func (c cpu) sub(d cpu) cpu { return cpu{c.user - d.user, c.system - d.system} }

// cpuTime returns the CPU time that pid and its children processes have used so far, from
// /proc. nginx serves from worker processes under its master, so a process's cost includes its
// live children.
func cpuTime(pid int) cpu {
	total := procCPU(pid)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		if parentOf(child) == pid {
			c := procCPU(child)
			total.user += c.user
			total.system += c.system
		}
	}
	return total
}

func statFields(pid int) []string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	// The command name is in parentheses and may contain spaces; fields follow the last ")".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

func parentOf(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func procCPU(pid int) cpu {
	f := statFields(pid)
	// utime and stime are fields 14 and 15 of stat, so 11 and 12 after the name.
	if len(f) < 13 {
		return cpu{}
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return cpu{time.Duration(utime) * time.Second / clockTick, time.Duration(stime) * time.Second / clockTick}
}
