package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const healthcheckSynopsis = `demandpipe healthcheck [-url=http://127.0.0.1:8080/readyz] [-timeout=2s]

GETs -url and exits 0 on 200 OK, 1 otherwise (another status, a refused
connection, a timeout), with one line on stderr saying why. It is the
container's HEALTHCHECK: a minimal image has no curl.`

const healthcheckMore = `/readyz is 200 once the store holds a closed minute no older than
-serve.ready-max-age (3m); it is 503 before the first minute closes (about 90 s
after start on a live input), so give the check a start period. /healthz is 200
while the process serves at all. Proxy variables (HTTP_PROXY) are ignored: the
check is of this machine's process.`

// healthcheckCommand implements `demandpipe healthcheck`.
func healthcheckCommand(args []string) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	u := fs.String("url", "http://127.0.0.1:8080/readyz", "the URL to GET: /readyz (ready to answer) or /healthz (alive)")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this long, connecting and reading included (>0)")
	if err := parse(fs, args, healthcheckSynopsis, healthcheckMore); err != nil {
		return err
	}
	return healthcheck(*u, *timeout)
}

// healthcheck GETs u within timeout: nil on 200, otherwise an error of one
// line naming the URL and the status with the start of the body (readyz
// says why it is not ready), or the transport error.
func healthcheck(u string, timeout time.Duration) error {
	if timeout <= 0 {
		return fmt.Errorf("-timeout=%s: want > 0", timeout)
	}
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return fmt.Errorf("-url=%q: want http://HOST:PORT/PATH", u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	// No proxy from the environment and no connection kept: one request.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return oneLine(err.Error())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	msg := u + ": " + resp.Status
	if b := strings.TrimSpace(string(body)); b != "" {
		msg += ": " + b
	}
	return oneLine(msg)
}

// oneLine is s as an error on one line of at most 300 bytes.
func oneLine(s string) error {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:297], "") + "..."
	}
	return fmt.Errorf("%s", s)
}
