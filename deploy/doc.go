// Package deploy holds what runs demandpipe outside a checkout, and the
// tests that keep it honest. It has no code of its own:
//
//	../Dockerfile            multi-stage image: the release build (cgo for
//	                         H3, stamped as `make build` stamps), run from
//	                         distroless as UID 65532, HEALTHCHECK on /readyz
//	                         by `demandpipe healthcheck`
//	../.dockerignore         the build context
//	demandpipe.service       a hardened systemd unit: `demandpipe run
//	                         -config=/etc/demandpipe/demandpipe.yaml`, the
//	                         store in its StateDirectory
//	demandpipe.yaml          the example config: `demandpipe config
//	                         -format=yaml` with the defaults commented out
//
// There is no docker engine where the tests run, so the tests parse the
// Dockerfile (image_test.go), check its structure, and run its builder
// stage's `go build` line on a copy of the build context made by
// .dockerignore's rules. Then they run the binary: `version` shows the
// stamped build args, `healthcheck` answers for 200 and 503, and the
// image's command and the example config each start a run that serves and
// stops cleanly on SIGTERM.
// The unit is checked by `systemd-analyze verify` and `security`.
// The Grafana provisioning is in ../dashboards/provisioning.
package deploy
