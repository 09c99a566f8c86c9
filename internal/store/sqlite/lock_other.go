//go:build !unix

package sqlite

import (
	"fmt"
	"os"
)

// lockDir opens the data directory's lock file. Where advisory file locks are not available
// it does not lock: one process at a time remains the operator's to ensure.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return f, nil
}
