package rig

import (
	"testing"
	"time"
)

// CPU time is utime + stime in clock ticks, read after the command name even when that holds spaces and ')'.
func TestStatCPU(t *testing.T) {
	line := "4242 (re (spond) er) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 8 0 100 0 0"
	got, err := statCPU([]byte(line))
	if want := 3250 * time.Millisecond; err != nil || got != want {
		t.Fatalf("statCPU = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"", "4242 no name S 1", "4242 (x) S 1 2 3", "4242 (x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 x 75"} {
		if _, err := statCPU([]byte(bad)); err == nil {
			t.Errorf("statCPU(%q) succeeded; want an error", bad)
		}
	}
}
