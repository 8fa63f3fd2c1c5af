//go:build !linux

package postgres

import "syscall"

// setUserTimeout does nothing where TCP_USER_TIMEOUT is not offered: keepalives alone break a
// connection to a server cut off.
func setUserTimeout(string, string, syscall.RawConn) error { return nil }
