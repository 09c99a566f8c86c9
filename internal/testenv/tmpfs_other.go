//go:build !linux

package testenv

import (
	"runtime"
	"testing"
)

// Tmpfs mounts a tmpfs of size bytes for tests of a full disk (see the Linux version); on
// other systems it is reported Missing.
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	Missing(t, "a tmpfs of %d bytes: mounting one is done on Linux only, and this is %s", size, runtime.GOOS)
	return ""
}
