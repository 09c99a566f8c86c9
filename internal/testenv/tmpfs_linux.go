package testenv

import (
	"fmt"
	"syscall"
	"testing"
)

// Tmpfs mounts a tmpfs of size bytes on a new directory of t and returns the directory,
// for tests of a full disk; it is unmounted when t ends. Mounting needs root or
// CAP_SYS_ADMIN: without them the tmpfs is reported Missing, with the reason.
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		Missing(t, "cannot mount a tmpfs of %d bytes on %s (%v): mounting needs root or CAP_SYS_ADMIN; run the tests as root, or in a container started with --cap-add SYS_ADMIN", size, dir, err)
	}
	t.Cleanup(func() {
		// Detached, so that a file a failed test left open does not keep it mounted; the
		// memory is freed once nothing uses it.
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount the tmpfs on %s: %v", dir, err)
		}
	})
	return dir
}
