//go:build !linux

package reserve

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// room reports whether the file system holding dir has n bytes free, by writing a file of n
// bytes there and removing it.
func room(dir string, n int64) (bool, error) {
	f, err := os.CreateTemp(dir, FileName+".probe-*")
	if err != nil {
		return false, fmt.Errorf("probe the free space of %s: %w", dir, err)
	}
	err = writeZeros(f, n)
	err = errors.Join(err, f.Close(), os.Remove(f.Name()))
	if errors.Is(err, syscall.ENOSPC) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("probe the free space of %s: %w", dir, err)
	}
	return true, nil
}
