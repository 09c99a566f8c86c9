package reserve

import (
	"fmt"
	"os"
)

// zeroChunk is how many zeros writeZeros writes at a time.
const zeroChunk = 1 << 20

// writeZeros writes zeros over f's first size bytes and syncs them, which allocates them on
// file systems that do not compress or deduplicate zeros.
func writeZeros(f *os.File, size int64) error {
	buf := make([]byte, min(size, zeroChunk))
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}
