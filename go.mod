module github.com/demandpipe/demandpipe

go 1.26.0

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/uber/h3-go/v4 v4.5.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
)
