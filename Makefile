# The release build: a binary stamped with its version (git describe), commit
# and build date, which `demandpipe version` prints and demandpipe_build_info
# exports. `go build ./cmd/demandpipe` works too; it carries only what the Go
# toolchain records (the commit, in a git checkout).
#
#   make build     bin/demandpipe, stamped (CGO for H3)
#   make test      the whole suite, as .ci/run runs it

PKG      := github.com/demandpipe/demandpipe
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE     ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS  := -X $(PKG)/internal/buildinfo.stampedVersion=$(VERSION) -X $(PKG)/internal/buildinfo.stampedCommit=$(COMMIT) -X $(PKG)/internal/buildinfo.stampedDate=$(DATE)

.PHONY: build test
build:
	CGO_ENABLED=1 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/demandpipe ./cmd/demandpipe

test:
	bash .ci/run
