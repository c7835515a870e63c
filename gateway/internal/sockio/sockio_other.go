//go:build !linux

package sockio

import "syscall"

// supported is false elsewhere: readers and writers are the connections themselves.
const supported = false

func read(uintptr, []byte) (int, syscall.Errno)  { return 0, syscall.ENOSYS }
func write(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.ENOSYS }
