package job

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// outputLog is an import's output log, in ADT's format: one JSON object a line,
//
//	{"timestamp":"...","jobId":"...","jobType":"Import","logType":"Info","details":{"section":"Twins","status":"Started"}}
//
// Info lines give the job's status ("Started", "Succeeded", "Failed", "Cancelled") and each
// section's ("Started", "Succeeded", "Failed"); Error lines name a line of the input, in
// details.lineNumber, with the ADT error code and message it fails with. A file: output is
// written in place; an https: output is kept in a local file and PUT whole (as a block blob)
// whenever publish is called.
type outputLog struct {
	jobID string
	now   func() time.Time
	// code turns an error into its ADT code and message.
	code func(error) (string, string)

	f    *os.File
	w    *bufio.Writer
	size int64
	// synced is the size made durable by the last sync.
	synced int64
	// url and client, for an https: output.
	url    string
	client *http.Client
}

// openLog opens the output log at loc, cut to size bytes: what it held when the job last
// recorded its progress. An https: output is kept in a file of spool named after the job.
func openLog(loc location, spool, jobID string, size int64, now func() time.Time, code func(error) (string, string), client *http.Client) (*outputLog, error) {
	path := loc.path
	if path == "" {
		if err := os.MkdirAll(spool, 0o750); err != nil {
			return nil, fmt.Errorf("create the output log spool: %w", err)
		}
		sum := sha256.Sum256([]byte(jobID))
		path = filepath.Join(spool, hex.EncodeToString(sum[:16])+".ndjson")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open the output log: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("cut the output log to %d bytes: %w", size, err)
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seek the output log: %w", err)
	}
	return &outputLog{jobID: jobID, now: now, code: code, f: f, w: bufio.NewWriter(f), size: size, synced: size,
		url: loc.url, client: client}, nil
}

// logDetails is the details object of a log line.
type logDetails struct {
	Section    string `json:"section,omitempty"`
	Status     string `json:"status,omitempty"`
	LineNumber int    `json:"lineNumber,omitempty"`
	Code       string `json:"code,omitempty"`
	Message    string `json:"message,omitempty"`
}

// logLine is one line of the output log.
type logLine struct {
	Timestamp string     `json:"timestamp"`
	JobID     string     `json:"jobId"`
	JobType   string     `json:"jobType"`
	LogType   string     `json:"logType"`
	Details   logDetails `json:"details"`
}

// info logs a status: of the job when section is empty, else of the section.
func (l *outputLog) info(section, status string) error {
	return l.write("Info", logDetails{Section: section, Status: status})
}

// failure logs why line of section failed; line 0 means the input as a whole.
func (l *outputLog) failure(section string, line int, err error) error {
	code, msg := l.code(err)
	return l.write("Error", logDetails{Section: section, LineNumber: line, Code: code, Message: msg})
}

func (l *outputLog) write(typ string, d logDetails) error {
	b, err := json.Marshal(logLine{
		Timestamp: l.now().UTC().Format(logTimeLayout), JobID: l.jobID, JobType: "Import", LogType: typ, Details: d,
	})
	if err != nil {
		return fmt.Errorf("encode an output log line: %w", err)
	}
	b = append(b, '\n')
	if _, err := l.w.Write(b); err != nil {
		return fmt.Errorf("write the output log: %w", err)
	}
	l.size += int64(len(b))
	return nil
}

// logTimeLayout is the timestamp format of ADT's output log: seven fractional digits and Z.
const logTimeLayout = "2006-01-02T15:04:05.0000000Z"

// sync makes everything written so far durable, so that the job may record the log's size
// with its progress.
func (l *outputLog) sync() error {
	if l.size == l.synced {
		return nil
	}
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("write the output log: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("sync the output log: %w", err)
	}
	l.synced = l.size
	return nil
}

// publish syncs the log and, for an https: output, uploads it whole as a block blob.
func (l *outputLog) publish(ctx context.Context) error {
	if err := l.sync(); err != nil {
		return err
	}
	if l.url == "" {
		return nil
	}
	body := make([]byte, l.size)
	if _, err := l.f.ReadAt(body, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read the output log: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, l.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("upload the output log: %w", err)
	}
	req.Header.Set("x-ms-blob-type", "BlockBlob")
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := l.client.Do(req)
	if err != nil {
		return fmt.Errorf("upload the output log: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("upload the output log: %s answered %s", l.url, resp.Status)
	}
	return nil
}

// close syncs and closes the log.
func (l *outputLog) close() error {
	return errors.Join(l.sync(), l.f.Close())
}
