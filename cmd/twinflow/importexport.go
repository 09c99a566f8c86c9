package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/twinflow/twinflow/internal/client"
)

// importPoll is how often `twinflow import` asks how its job is doing.
const importPoll = 250 * time.Millisecond

// newImportCmd is `twinflow import`.
func newImportCmd(a *app) *cobra.Command {
	var progress bool
	var jobID string
	c := &cobra.Command{
		Use:   "import FILE.ndjson",
		Short: "Import models, twins and relationships from an NDJSON file (ADT's import format)",
		Long: `Import the models, twins and relationships of FILE, in ADT's import job format (NDJSON with
the sections Header, Models, Twins and Relationships; plain or gzip-compressed).

The file is uploaded to the server's jobs directory (PUT /jobs/files/{name}), an import job
is created to read it (PUT /jobs/imports/{id}), and the job is followed until it ends, with
a progress bar on stderr when stdout is a terminal or with --progress. A failed job exits 1
with its error; its output log, in the jobs directory, lists every failing line. Both the
upload and the job need the owner role.`,
		Example: `  twinflow import building.ndjson
  twinflow export -o backup.ndjson && twinflow import backup.ndjson --server http://other:8080`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			path := args[0]
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			info, err := f.Stat()
			if err != nil {
				return err
			}
			total := countImportLines(path)
			cl, err := a.client()
			if err != nil {
				return err
			}
			if jobID == "" {
				jobID = importJobID(path)
			}
			show := progress || terminal(a.stdout)
			var body io.Reader = f
			var bar *progressbar.ProgressBar
			if show {
				bar = progressbar.DefaultBytes(info.Size(), "uploading "+filepath.Base(path))
				progressbar.OptionSetWriter(a.stderr)(bar)
				body = io.TeeReader(f, bar)
			}
			uri, err := cl.UploadJobFile(a.ctx, jobID+".ndjson", body, info.Size())
			if err != nil {
				return fmt.Errorf("upload %s: %w", path, err)
			}
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(a.stderr)
			}
			logURI := "file:" + jobID + ".log"
			if _, err := cl.CreateImportJob(a.ctx, jobID, uri, logURI); err != nil {
				return fmt.Errorf("create the import job %s: %w", jobID, err)
			}
			if show {
				bar = progressbar.NewOptions(total,
					progressbar.OptionSetWriter(a.stderr),
					progressbar.OptionSetDescription("importing"),
					progressbar.OptionShowCount(),
					progressbar.OptionSetWidth(30),
					progressbar.OptionThrottle(0),
				)
			}
			j, err := waitImport(a, cl, jobID, func(j client.ImportJob) {
				if bar != nil {
					p := j.Progress
					bar.Describe(fmt.Sprintf("importing %s: %d models, %d twins, %d relationships", p.Section, p.Models, p.Twins, p.Relationships))
					_ = bar.Set(p.Models + p.Twins + p.Relationships)
				}
			})
			if bar != nil {
				fmt.Fprintln(a.stderr)
			}
			if err != nil {
				return err
			}
			p := j.Progress
			if j.Status != "succeeded" {
				msg := "the import job " + jobID + " " + j.Status
				if j.Error != nil {
					msg += ": " + j.Error.Code + ": " + j.Error.Message
				}
				msg += fmt.Sprintf("\nimported before it stopped: %d models, %d twins, %d relationships", p.Models, p.Twins, p.Relationships)
				msg += failedLines(a, cl, jobID+".log")
				return errors.New(msg)
			}
			fmt.Fprintf(a.stdout, "imported %d models, %d twins and %d relationships (job %s)\n", p.Models, p.Twins, p.Relationships, jobID)
			return nil
		},
	}
	c.Flags().BoolVar(&progress, "progress", false, "show the progress bars even when stdout is not a terminal")
	c.Flags().StringVar(&jobID, "job-id", "", "the import job's `id` (default: from the file's name and the time)")
	return c
}

// maxFailedLines is how many failing lines of an import's output log are printed.
const maxFailedLines = 10

// failedLines returns the failing lines the output log name lists, one a line, for the
// message of a failed import; "" when the log cannot be read.
func failedLines(a *app, cl *client.Client, name string) string {
	rc, err := cl.JobFile(a.ctx, name)
	if err != nil {
		return ""
	}
	defer rc.Close()
	var b strings.Builder
	n := 0
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var entry struct {
			LogType string `json:"logType"`
			Details struct {
				Section    string `json:"section"`
				LineNumber int    `json:"lineNumber"`
				Code       string `json:"code"`
				Message    string `json:"message"`
			} `json:"details"`
		}
		if json.Unmarshal(sc.Bytes(), &entry) != nil || entry.LogType != "Error" || entry.Details.LineNumber == 0 {
			continue
		}
		n++
		if n <= maxFailedLines {
			d := entry.Details
			fmt.Fprintf(&b, "\n  line %d (%s): %s: %s", d.LineNumber, d.Section, d.Code, d.Message)
		}
	}
	if n > maxFailedLines {
		fmt.Fprintf(&b, "\n  and %d more failing lines (twinflow's GET /jobs/files/%s has them all)", n-maxFailedLines, name)
	}
	return b.String()
}

// waitImport polls the import job id until it ends, calling seen with each state.
func waitImport(a *app, cl *client.Client, id string, seen func(client.ImportJob)) (client.ImportJob, error) {
	t := time.NewTicker(importPoll)
	defer t.Stop()
	for {
		j, err := cl.GetImportJob(a.ctx, id)
		if err != nil {
			return j, fmt.Errorf("follow the import job %s: %w", id, err)
		}
		seen(j)
		if j.Finished() {
			return j, nil
		}
		select {
		case <-a.ctx.Done():
			return j, fmt.Errorf("stopped following the import job %s, which goes on (GET /jobs/imports/%s): %w", id, id, a.ctx.Err())
		case <-t.C:
		}
	}
}

// unsafeIDChars are the characters an import job id made from a file name leaves out.
var unsafeIDChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// importJobID makes the id of an import of path: its base name, the time and a random
// suffix, so that two imports of one file never share a job or its files.
func importJobID(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	base = strings.Trim(unsafeIDChars.ReplaceAllString(base, "-"), "-")
	if base == "" {
		base = "import"
	}
	if len(base) > 64 {
		base = base[:64]
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s-%s-%s", base, time.Now().UTC().Format("20060102T150405"), hex.EncodeToString(r[:]))
}

// countImportLines returns the number of models, twins and relationships in the import file
// at path (its lines outside the Header section that are not section markers), for the
// progress bar; -1 when it cannot tell.
func countImportLines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var r io.Reader = br
	if head, _ := br.Peek(2); bytes.Equal(head, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return -1
		}
		defer zr.Close()
		r = zr
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	n, header := 0, false
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if bytes.Contains(line, []byte(`"Section"`)) {
			var s struct{ Section string }
			if json.Unmarshal(line, &s) == nil && s.Section != "" {
				header = strings.EqualFold(s.Section, "Header")
				continue
			}
		}
		if !header {
			n++
		}
	}
	if sc.Err() != nil {
		return -1
	}
	return n
}

// newExportCmd is `twinflow export`.
func newExportCmd(a *app) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "export [-o FILE]",
		Short: "Write the whole graph in ADT's import format, which import reads back",
		Long: `Write every model (with its definition, in dependency order), every twin and every
relationship as an NDJSON file in ADT's import job format (sections Header, Models, Twins,
Relationships) to FILE, or to stdout. "twinflow import" reads it back, into this server or
another. Twins and relationships are read with queries, so the export is not one snapshot:
a write made while it runs may be in it or not.`,
		Example: "  twinflow export -o backup.ndjson\n  twinflow export | gzip > backup.ndjson.gz",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) (err error) {
			cl, err := a.client()
			if err != nil {
				return err
			}
			w := a.stdout
			if out != "" && out != "-" {
				f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
				if err != nil {
					return err
				}
				defer func() {
					if cerr := f.Close(); err == nil && cerr != nil {
						err = cerr
					}
					if err != nil {
						os.Remove(f.Name())
						return
					}
					err = os.Rename(f.Name(), out)
				}()
				w = f
			}
			bw := bufio.NewWriterSize(w, 256<<10)
			n, err := export(a, cl, bw)
			if err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return fmt.Errorf("write the export: %w", err)
			}
			if out != "" && out != "-" {
				fmt.Fprintf(a.stderr, "exported %d models, %d twins and %d relationships to %s\n", n[0], n[1], n[2], out)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&out, "file", "o", "", "write to `FILE` (atomically) instead of stdout")
	return c
}

// export writes the graph to w and returns the numbers of models, twins and relationships.
func export(a *app, cl *client.Client, w io.Writer) ([3]int, error) {
	var n [3]int
	line := func(v any) error { return writeLine(w, v) }
	if err := line(map[string]string{"Section": "Header"}); err != nil {
		return n, err
	}
	if err := line(map[string]string{"fileVersion": "1.0.0", "author": "twinflow export", "organization": cl.Server()}); err != nil {
		return n, err
	}
	models, err := cl.ListModels(a.ctx, true)
	if err != nil {
		return n, fmt.Errorf("list the models: %w", err)
	}
	local := make([]localModel, 0, len(models))
	for _, m := range models {
		lm, err := parseModel(m.Model)
		if err != nil {
			return n, fmt.Errorf("read the model %s: %w", m.ID, err)
		}
		local = append(local, lm)
	}
	batches, err := uploadBatches(local, len(local)+1)
	if err != nil {
		return n, err
	}
	if err := line(map[string]string{"Section": "Models"}); err != nil {
		return n, err
	}
	for _, b := range batches {
		for _, m := range b {
			if err := line(m.raw); err != nil {
				return n, err
			}
			n[0]++
		}
	}
	if err := line(map[string]string{"Section": "Twins"}); err != nil {
		return n, err
	}
	err = cl.Query(a.ctx, "SELECT * FROM DIGITALTWINS", 1000, func(rows []json.RawMessage) error {
		for _, r := range rows {
			t, err := exportTwin(r)
			if err != nil {
				return err
			}
			if err := line(t); err != nil {
				return err
			}
			n[1]++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("query the twins: %w", err)
	}
	if err := line(map[string]string{"Section": "Relationships"}); err != nil {
		return n, err
	}
	err = cl.Query(a.ctx, "SELECT * FROM RELATIONSHIPS", 1000, func(rows []json.RawMessage) error {
		for _, r := range rows {
			rel, err := exportRelationship(r)
			if err != nil {
				return err
			}
			if err := line(rel); err != nil {
				return err
			}
			n[2]++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("query the relationships: %w", err)
	}
	return n, nil
}

// exportTwin turns a twin as a query returns it into a Twins line of the import format: its
// $etag goes, and its $metadata keeps only $model.
func exportTwin(raw json.RawMessage) (map[string]json.RawMessage, error) {
	var t map[string]json.RawMessage
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("read a twin of the query: %w", err)
	}
	var meta struct {
		Model string `json:"$model"`
	}
	if err := json.Unmarshal(t["$metadata"], &meta); err != nil || meta.Model == "" {
		return nil, fmt.Errorf("the twin %s has no $metadata.$model", t["$dtId"])
	}
	delete(t, "$etag")
	t["$metadata"], _ = json.Marshal(map[string]string{"$model": meta.Model})
	return t, nil
}

// exportRelationship turns a relationship as a query returns it into a Relationships line
// of the import format: $sourceId becomes $dtId, and $etag goes.
func exportRelationship(raw json.RawMessage) (map[string]json.RawMessage, error) {
	var r map[string]json.RawMessage
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("read a relationship of the query: %w", err)
	}
	src, ok := r["$sourceId"]
	if !ok {
		return nil, fmt.Errorf("the relationship %s has no $sourceId", r["$relationshipId"])
	}
	r["$dtId"] = src
	delete(r, "$sourceId")
	delete(r, "$etag")
	return r, nil
}
