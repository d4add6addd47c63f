# The release build: a binary stamped with its version (git describe), commit
# and build date, which `demandpipe version` prints and demandpipe_build_info
# exports. `go build ./cmd/demandpipe` works too; it carries only what the Go
# toolchain records (the commit, in a git checkout).
#
#   make build     bin/demandpipe, stamped (CGO for H3), without the test
#                  servers (-tags nodoubles: internal/doubles)
#   make test      the whole suite, as .ci/run runs it
#   make docker    the image (Dockerfile), stamped the same way; needs a Docker
#                  engine with BuildKit (deploy/deploy_test.go checks the
#                  Dockerfile and runs its build line without one)

PKG      := github.com/demandpipe/demandpipe
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE     ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS  := -X $(PKG)/internal/buildinfo.stampedVersion=$(VERSION) -X $(PKG)/internal/buildinfo.stampedCommit=$(COMMIT) -X $(PKG)/internal/buildinfo.stampedDate=$(DATE)

.PHONY: build test
build:
	CGO_ENABLED=1 go build -trimpath -tags nodoubles -ldflags "$(LDFLAGS)" -o bin/demandpipe ./cmd/demandpipe

test:
	bash .ci/run

.PHONY: docker
docker:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) -t demandpipe:$(VERSION) -t demandpipe:latest .
