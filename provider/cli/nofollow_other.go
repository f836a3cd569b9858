//go:build !unix

package cli

// oNoFollow is 0 where the platform has no O_NOFOLLOW; the Lstat check in writePrivate still refuses a link.
const oNoFollow = 0
