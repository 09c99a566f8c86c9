package sqlite

import (
	"os"
	"syscall"
)

// syncData flushes f's data, and the metadata needed to read it back, to stable storage. On
// Linux that is fdatasync, as SQLite itself uses: unlike fsync it does not wait for
// timestamps, and the write-ahead log is rewritten in place, so its size rarely changes.
func syncData(f *os.File) error {
	fd := int(f.Fd())
	for {
		err := syscall.Fdatasync(fd)
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
