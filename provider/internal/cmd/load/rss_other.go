//go:build !unix

package main

func maxRSS() (int64, bool) { return 0, false }
