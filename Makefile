# The one command that checks everything: `make test`. .ci/run runs exactly this.

.PHONY: test fuzz sdk-deps run ui ui-check

## test: vet, every Go test with the race detector (the JavaScript SDK test included), then
## a bounded run of every fuzz target.
test: sdk-deps
	go vet ./...
	go test -race ./...
	$(MAKE) fuzz

# FUZZ_TARGETS lists every fuzz target as package:Name; FUZZTIME bounds each one's run.
# Crashers a run finds are written to the package's testdata/fuzz, to be fixed and committed.
FUZZ_TARGETS = \
	./internal/api:FuzzAPI ./internal/api:FuzzTwinDoc \
	./internal/twin:FuzzEncode ./internal/twin:FuzzDecode ./internal/twin:FuzzApplyTwinPatch ./internal/twin:FuzzParsePatch \
	./internal/query:FuzzParse ./internal/graph:FuzzMember \
	./internal/dtdl:FuzzParse ./internal/dtdl:FuzzValidate \
	./internal/expr:FuzzParse ./internal/mapping:FuzzMap
FUZZTIME ?= 10s

## fuzz: run each fuzz target for FUZZTIME (10s) beyond its seed corpus.
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
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
