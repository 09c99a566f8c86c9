# The one command that checks everything: `make test`. .ci/run runs exactly this.

.PHONY: test fuzz sdk-deps run ui ui-check

## test: vet, every Go test with the race detector (the JavaScript SDK test included), the
## test that restarts PostgreSQL (on its own: the other tests use that server too), then a
## bounded run of every fuzz target.
test: sdk-deps
	go vet ./...
	go test -race ./...
	TWINFLOW_TEST_RESTART_POSTGRESQL=1 go test -race -run '^TestClusterSurvivesPostgreSQLRestart$$' ./test/e2e/
	$(MAKE) fuzz

# FUZZ_TARGETS lists every fuzz target as package:Name; FUZZTIME bounds each one's run.
# Crashers a run finds are written to the package's testdata/fuzz, to be fixed and committed.
FUZZ_TARGETS = \
	./internal/api:FuzzAPI ./internal/api:FuzzTwinDoc \
	./internal/twin:FuzzEncode ./internal/twin:FuzzDecode ./internal/twin:FuzzApplyTwinPatch ./internal/twin:FuzzParsePatch \
	./internal/query:FuzzParse ./internal/graph:FuzzMember \
	./internal/dtdl:FuzzParse ./internal/dtdl:FuzzValidate \
	./internal/expr:FuzzParse ./internal/mapping:FuzzMap \
	./internal/jsontext:FuzzAppendString ./internal/store/sqlite:FuzzDecodeEvent ./internal/detector:FuzzPoints
FUZZTIME ?= 10s

## fuzz: run each fuzz target for FUZZTIME (10s) beyond its seed corpus. Go 1.26's fuzz engine
## can report "context deadline exceeded" when -fuzztime ends while a worker is mid-call
## (go.dev/issue/75804, fixed in Go 1.27), more often on a loaded machine: a run that fails
## with that and wrote no failing input is run again, up to three runs; any other failure, or
## a third one, fails.
fuzz:
	@set -e; out=$$(mktemp); trap 'rm -f "$$out"' EXIT; \
	for t in $(FUZZ_TARGETS); do \
		for try in 1 2 3; do \
			echo "fuzz $$t for $(FUZZTIME)"; \
			if go test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) "$${t%%:*}" >"$$out" 2>&1; then cat "$$out"; break; fi; \
			cat "$$out"; \
			if [ $$try != 3 ] && tail -n 5 "$$out" | grep -q 'context deadline exceeded' && ! grep -q 'Failing input written' "$$out"; then \
				echo "fuzz $$t: the engine's end-of-fuzztime race (go.dev/issue/75804), no failing input; running it again"; \
			else exit 1; fi; \
		done; \
	done

## sdk-deps: install the pinned npm packages the SDK test drives (test/sdk/package-lock.json).
sdk-deps:
	cd test/sdk && npm ci --no-audit --no-fund --loglevel=error

## ui: install the explorer's pinned npm packages (internal/ui/web/package-lock.json) and
## build it into internal/ui/dist, which is committed and embedded in the binary.
ui:
	cd internal/ui/web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

## ui-check: rebuild the explorer and fail unless the build equals the committed dist.
ui-check: ui
	git diff --exit-code -- internal/ui/dist
	@untracked=$$(git ls-files --others --exclude-standard -- internal/ui/dist); \
	if [ -n "$$untracked" ]; then echo "untracked files in internal/ui/dist: $$untracked" >&2; exit 1; fi

## run: start a server on 127.0.0.1:8080 with its data in ./twinflow-data.
run:
	go run ./cmd/twinflow serve
