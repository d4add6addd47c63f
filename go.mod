module github.com/demandpipe/demandpipe

go 1.26.0

require (
	github.com/cespare/xxhash/v2 v2.3.0
	github.com/uber/h3-go/v4 v4.5.0
	go.uber.org/goleak v1.3.0
)

require github.com/klauspost/compress v1.20.4
