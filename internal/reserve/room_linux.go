package reserve

import (
	"fmt"
	"syscall"
)

// room reports whether the file system holding dir has n bytes free for unprivileged
// writers, as statfs counts them.
func room(dir string, n int64) (bool, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return false, fmt.Errorf("read the free space of %s: %w", dir, err)
	}
	return int64(st.Bavail)*int64(st.Bsize) >= n, nil
}
