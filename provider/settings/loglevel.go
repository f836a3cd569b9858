package settings

import (
	"fmt"
	"log/slog"
	"strings"
)

// rustTarget is the original Rust service's crate name, as RUST_LOG users wrote it.
const rustTarget = "infisical_secrets_provider"

// parseLevel reads a LOG_LEVEL value. trace and warning are accepted because Rust and Python users write them.
func parseLevel(v string) (slog.Level, bool) {
	switch strings.ToLower(v) {
	case "trace", "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error", "off":
		return slog.LevelError, true
	}
	return 0, false
}

// rustLogLevel reads an env_logger/tracing RUST_LOG value such as "debug", "info,async_nats=warn" or
// "infisical_secrets_provider=debug": the level given for this crate (or one of its modules) wins, then the bare
// default level, then info. It never fails: RUST_LOG is shared with other programs, so what it does not understand
// it ignores.
func rustLogLevel(v string) slog.Level {
	level, own := slog.LevelInfo, false
	for directive := range strings.SplitSeq(v, ",") {
		directive, _, _ = strings.Cut(strings.TrimSpace(directive), "/") // drop env_logger's "/regex" filter
		if directive == "" {
			continue
		}
		target, lvl, hasLevel := strings.Cut(directive, "=")
		if !hasLevel {
			if l, ok := parseLevel(directive); ok {
				if !own {
					level = l
				}
				continue
			}
			// A bare target enables everything for it.
			target, lvl = directive, "trace"
		}
		target = strings.TrimSpace(target)
		if target != rustTarget && !strings.HasPrefix(target, rustTarget+"::") {
			continue
		}
		if l, ok := parseLevel(strings.TrimSpace(lvl)); ok {
			level, own = l, true
		}
	}
	return level
}

func levelName(l slog.Level) string {
	return strings.ToLower(l.String())
}

func setLogLevel(s *Settings, v string) error {
	l, ok := parseLevel(v)
	if !ok {
		return fmt.Errorf("%q is not a log level; use debug, info, warn or error", v)
	}
	s.LogLevel = l
	return nil
}

func setRustLog(s *Settings, v string) error {
	s.LogLevel = rustLogLevel(v)
	return nil
}
