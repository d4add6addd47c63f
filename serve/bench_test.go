package serve

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/store"
)

// The read benchmarks go over loopback HTTP against a store holding a
// dense metro minute (a radius-70 disk: 14,911 cells, two products), with
// writing=true a goroutine commits such minutes back to back into the same
// store while the reads run (the engine's worst case: on 2 cores the writer
// and pebble's flushes take the CPU the reads need), with writing=paced one
// such minute every 250 ms (a replay at 240x real time; live, a minute
// closes every 60 s). They report p50 and p99 latency of sequential
// requests besides ns/op. writing=engine runs the real pipeline at full
// speed into the store (generated city events replayed from memory, over
// and over) while the reads run.

type benchEnv struct {
	url     string
	cells   []uint64
	product string
	minutes atomic.Int64
	stop    func()
}

func newBenchEnv(b *testing.B, writing string) *benchEnv {
	sc := store.DefaultConfig()
	sc.Dir = b.TempDir()
	sc.Retention = 5 * time.Minute
	st, err := store.Open(sc, nil)
	if err != nil {
		b.Fatal(err)
	}
	center, _ := h3.LatLngToCell(h3.NewLatLng(40.7580, -73.9855), 8)
	disk, _ := h3.GridDisk(center, 70)
	env := &benchEnv{product: fixProducts[0]}
	for _, c := range disk {
		env.cells = append(env.cells, uint64(c))
	}
	names := encode.NewProducts()
	var batch encode.Batch
	writeMinute := func(m int64) {
		batch.Names = names
		batch.Reset(m, 54)
		for p := range fixProducts {
			code, _ := names.Code(fixUUID(p))
			for i, c := range env.cells {
				batch.Cells = append(batch.Cells, c)
				batch.Products = append(batch.Products, code)
				for j := range 54 {
					batch.Features = append(batch.Features, int32((i+j+int(m))%5000))
				}
			}
		}
		if err := st.Write(context.Background(), &batch); err != nil {
			b.Error(err)
		}
		if err := st.CloseMinute(context.Background(), m); err != nil {
			b.Error(err)
		}
	}
	writeMinute(fixMinute)
	srv, err := New(DefaultConfig(), st, nil)
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	env.url = ts.URL
	done := make(chan struct{})
	var wg sync.WaitGroup
	if writing == "engine" {
		// The real pipeline replays generated city events into the store
		// as fast as it can, over and over (rewriting the same minutes):
		// the engine's workers and the store's flushes contend with the
		// reads for the two cores.
		gc := gen.DefaultConfig()
		gc.EventsPerMinute = 50_000
		data, err := gen.Generate(gc, 300_000)
		if err != nil {
			b.Fatal(err)
		}
		g, _ := gen.New(gc)
		env.product = g.Products()[0].String()
		// A first replay so that reads find the generated product.
		replay := func(ctx context.Context) error {
			e, err := pipeline.New(pipeline.DefaultConfig())
			if err != nil {
				return err
			}
			err = e.Run(ctx, bytes.NewReader(data), st)
			env.minutes.Add(e.Stats.Minutes.Load())
			return err
		}
		if err := replay(context.Background()); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := replay(ctx); err != nil && ctx.Err() == nil {
					b.Error(err)
					return
				}
			}
		}()
		go func() { <-done; cancel() }()
	} else if writing != "none" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(250 * time.Millisecond)
			defer tick.Stop()
			for m := int64(fixMinute + 1); ; m++ {
				if writing == "paced" {
					select {
					case <-done:
						return
					case <-tick.C:
					}
				}
				select {
				case <-done:
					return
				default:
				}
				writeMinute(m)
				env.minutes.Add(1)
			}
		}()
	}
	env.stop = func() {
		close(done)
		wg.Wait()
		ts.Close()
		st.Close()
	}
	return env
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}

func benchHTTP(b *testing.B, writing string, do func(hc *http.Client, i int) (*http.Response, error)) {
	env := newBenchEnv(b, writing)
	defer env.stop()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer hc.CloseIdleConnections()
	benchEnvURL, benchCells, benchProduct = env.url, env.cells, env.product
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		start := time.Now()
		res, err := do(hc, i)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("status %d", res.StatusCode)
		}
		lat = append(lat, time.Since(start))
		i++
	}
	b.StopTimer()
	reportLatency(b, lat)
	if writing != "none" {
		b.ReportMetric(float64(env.minutes.Load()), "minutes-written")
	}
}

var (
	benchEnvURL  string
	benchCells   []uint64
	benchProduct string
)

func BenchmarkHTTPGet(b *testing.B) {
	for _, writing := range []string{"none", "paced", "full", "engine"} {
		b.Run(fmt.Sprintf("cells=1/writing=%s", writing), func(b *testing.B) {
			benchHTTP(b, writing, func(hc *http.Client, i int) (*http.Response, error) {
				c := benchCells[(i*7919)%len(benchCells)]
				return hc.Get(fmt.Sprintf("%s/v1/features?h3=%x&product=%s", benchEnvURL, c, benchProduct))
			})
		})
	}
}

func BenchmarkHTTPBatch(b *testing.B) {
	for _, writing := range []string{"none", "paced", "full", "engine"} {
		b.Run(fmt.Sprintf("cells=200/writing=%s", writing), func(b *testing.B) {
			var bodies []string
			benchHTTP(b, writing, func(hc *http.Client, i int) (*http.Response, error) {
				if bodies == nil {
					// 8 request bodies of 200 nearby cells each, built once.
					for k := range 8 {
						var sb strings.Builder
						sb.WriteString(`{"product":"` + benchProduct + `","cells":[`)
						for j := range 200 {
							if j > 0 {
								sb.WriteByte(',')
							}
							fmt.Fprintf(&sb, `"%x"`, benchCells[(k*1500+j*3)%len(benchCells)])
						}
						sb.WriteString("]}")
						bodies = append(bodies, sb.String())
					}
				}
				return hc.Post(benchEnvURL+"/v1/features:batch", "application/json", strings.NewReader(bodies[i%len(bodies)]))
			})
		})
	}
}
