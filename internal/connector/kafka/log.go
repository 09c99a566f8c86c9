package kafka

import (
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// logger passes franz-go's warnings and errors to a slog.Logger.
type logger struct {
	l      *slog.Logger
	prefix string // "kafka endpoint: ", "kafka source: "
}

var _ kgo.Logger = logger{}

// Level asks franz-go for warnings and errors only: its info level logs every connection.
func (logger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

// Log writes one franz-go message with its key-value pairs.
func (l logger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelWarn
	if level == kgo.LogLevelError {
		lv = slog.LevelError
	}
	l.l.Log(context.Background(), lv, l.prefix+msg, keyvals...)
}
