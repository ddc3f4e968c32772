//go:build !unix

package outbox

import "os"

// tryLockFile: without flock, every relay on a SQLite store is active, and
// the stream's duplicate window drops the second copies.
func tryLockFile(*os.File) (bool, error) { return true, nil }
