# The one command that checks everything: `make test`. .ci/run runs exactly this.

.PHONY: test sdk-deps run

## test: vet, then every Go test with the race detector, the JavaScript SDK test included.
test: sdk-deps
	go vet ./...
	go test -race ./...

## sdk-deps: install the pinned npm packages the SDK test drives (test/sdk/package-lock.json).
sdk-deps:
	cd test/sdk && npm ci --no-audit --no-fund --loglevel=error

## run: start a server on 127.0.0.1:8080 with its data in ./twinflow-data.
run:
	go run ./cmd/twinflow serve
