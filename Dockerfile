# demandpipe in a container: the release build (`make build`'s command, cgo
# for H3) in a Go image, run from a distroless image that has glibc and
# little else, as a non-root user, with the store on a volume.
#
#   make docker        (VERSION, COMMIT and DATE as build args, as make build)
#   docker run -d --name demandpipe -p 8080:8080 --stop-timeout 90
#     -v demandpipe-data:/var/lib/demandpipe demandpipe:latest     (one line)
#
# The default command runs the synthetic live city into the store and serves
# the API, the page and /metrics on :8080. A real input is another command
# (docker run … demandpipe:latest run -source=… -sink=… -serve=…):
#   -source='pulsar://HOST:6650/TOPIC?subscription=demandpipe'
#   -sink=store:/var/lib/demandpipe/features -serve=:8080
# SIGTERM closes the minutes seen so far; run forces its exit after
# -shutdown-timeout (1m), and the server has 5 s more: hence --stop-timeout
# 90 (docker's default, 10 s, kills it mid-close).
#
# There is no engine where the tests run: deploy/deploy_test.go checks this
# file, runs its build line on the context .dockerignore leaves, and runs
# the image's command and HEALTHCHECK with what it built.

# Debian 12 on both sides: the binary links the glibc it was built against.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=unknown
ARG COMMIT=unknown
ARG DATE=unknown
ARG PKG=github.com/demandpipe/demandpipe
RUN CGO_ENABLED=1 go build -trimpath -tags nodoubles -ldflags "-X ${PKG}/internal/buildinfo.stampedVersion=${VERSION} -X ${PKG}/internal/buildinfo.stampedCommit=${COMMIT} -X ${PKG}/internal/buildinfo.stampedDate=${DATE}" -o /out/demandpipe ./cmd/demandpipe
# The store's directory, owned by the runtime user (distroless has no shell
# to make it there).
RUN mkdir -p /out/data

# glibc, CA certificates and tzdata; "nonroot" is UID 65532.
FROM gcr.io/distroless/base-debian12:nonroot
ARG VERSION=unknown
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="demandpipe" \
      org.opencontainers.image.description="raw rider events in, geospatial demand features out" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/demandpipe /usr/local/bin/demandpipe
COPY --from=build --chown=65532:65532 /out/data /var/lib/demandpipe
USER 65532:65532
WORKDIR /var/lib/demandpipe
VOLUME ["/var/lib/demandpipe"]
EXPOSE 8080
STOPSIGNAL SIGTERM
# /readyz is 503 until the first minute closes (~90 s on a live input).
HEALTHCHECK --interval=30s --timeout=5s --start-period=3m --retries=3 \
    CMD ["/usr/local/bin/demandpipe", "healthcheck", "-url=http://127.0.0.1:8080/readyz", "-timeout=4s"]
ENTRYPOINT ["/usr/local/bin/demandpipe"]
CMD ["run", "-sink=store:/var/lib/demandpipe/features", "-serve=:8080"]
