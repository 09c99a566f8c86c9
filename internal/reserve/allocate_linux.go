package reserve

import (
	"errors"
	"os"
	"syscall"
)

// allocateFile makes f hold at least size bytes allocated on the disk, with fallocate where
// the file system has it and by writing zeros where it does not.
func allocateFile(f *os.File, size int64) error {
	for {
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EOPNOTSUPP):
			return writeZeros(f, size)
		}
		return &os.PathError{Op: "fallocate", Path: f.Name(), Err: err}
	}
}
