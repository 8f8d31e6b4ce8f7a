package wasmig

import (
	"fmt"
	"strings"

	witlog "wasmig/internal/wit/imports/wasmig_migration_log"
	witTypes "wasmig/internal/wit/types"
)

// Level is the severity of a log message; wasmig filters by its own LOG_LEVEL.
type Level uint8

const (
	// LevelTrace is very detailed tracing.
	LevelTrace Level = Level(witlog.Level_Trace)
	// LevelDebug is debugging detail.
	LevelDebug Level = Level(witlog.Level_Debug)
	// LevelInfo is normal progress messages (shown by default).
	LevelInfo Level = Level(witlog.Level_Info)
	// LevelWarn is something that looks wrong while the migration goes on.
	LevelWarn Level = Level(witlog.Level_Warn)
	// LevelError is something that failed (logging it does not fail the migration:
	// return an error for that).
	LevelError Level = Level(witlog.Level_Error)
)

// Log writes one message to wasmig's log, prefixed with the revision. Bytes that are not
// UTF-8 (a Go string may hold any) are written as U+FFFD: a log line never fails the
// migration for how it was made.
func Log(level Level, message string) {
	witlog.Log(witlog.Level(level), strings.ToValidUTF8(message, "\uFFFD"))
}

// Logf formats a message as fmt.Sprintf does and logs it at level.
func Logf(level Level, format string, args ...any) {
	Log(level, fmt.Sprintf(format, args...))
}

// Tracef logs at trace level.
func Tracef(format string, args ...any) { Log(LevelTrace, fmt.Sprintf(format, args...)) }

// Debugf logs at debug level.
func Debugf(format string, args ...any) { Log(LevelDebug, fmt.Sprintf(format, args...)) }

// Infof logs at info level.
func Infof(format string, args ...any) { Log(LevelInfo, fmt.Sprintf(format, args...)) }

// Warnf logs a warning.
func Warnf(format string, args ...any) { Log(LevelWarn, fmt.Sprintf(format, args...)) }

// Progress reports progress: done units of work so far, out of total (negative when
// unknown). wasmig shows a progress bar on a terminal and periodic log lines otherwise.
func Progress(done, total int64) {
	t := witTypes.None[uint64]()
	if total >= 0 {
		t = witTypes.Some(uint64(total))
	}
	witlog.Progress(uint64(max(done, 0)), t)
}
