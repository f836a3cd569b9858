//go:build unix

package cli

import "syscall"

// oNoFollow makes opening a symbolic link fail, so no link swapped in after the Lstat check is followed.
const oNoFollow = syscall.O_NOFOLLOW
