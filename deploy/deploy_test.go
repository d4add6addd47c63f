package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// repoRoot is the repository: the Dockerfile's build context.
const repoRoot = ".."

// buildArgs are what the test passes to the Dockerfile, as `make docker`
// passes VERSION, COMMIT and DATE.
var buildArgs = map[string]string{
	"VERSION": "v0.0.0-deploytest",
	"COMMIT":  "0123456789abcdef0123456789abcdef01234567",
	"DATE":    "2026-01-02T03:04:05Z",
}

var tmpRoot string // removed after the tests

func TestMain(m *testing.M) {
	var err error
	if tmpRoot, err = os.MkdirTemp("", "demandpipe-deploy-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmpRoot)
	os.Exit(code)
}

// TestDockerfile checks the image's structure: a Go 1.x builder with cgo
// on the Debian the runtime stage has, the release build's stamping, a
// non-root numeric user, the store on a volume, the port the command
// serves on, and a HEALTHCHECK that runs `demandpipe healthcheck` on
// /readyz with a start period longer than the first minute's close.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	img := loadImage(t)
	if len(img.df.stages) < 2 {
		t.Fatalf("%d stages, want a builder and a runtime stage", len(img.df.stages))
	}
	goVersion := goModVersion(t)
	if !strings.HasPrefix(img.builder.from, "golang:"+goVersion+"-bookworm") {
		t.Errorf("builder FROM %s: want golang:%s-bookworm (go.mod's Go; Debian 12, as the runtime stage)", img.builder.from, goVersion)
	}
	if f := img.final.from; !strings.Contains(f, "debian12") && !strings.HasPrefix(f, "debian:bookworm") {
		t.Errorf("runtime FROM %s: want Debian 12 (distroless base-debian12 or debian:bookworm-slim): the cgo binary needs the glibc it was built against", f)
	}
	if got := img.build.env["CGO_ENABLED"]; got != "1" {
		t.Errorf("build line: CGO_ENABLED=%q, want 1 (H3 is C)", got)
	}
	for arg, v := range map[string]string{"VERSION": "stampedVersion", "COMMIT": "stampedCommit", "DATE": "stampedDate"} {
		x := "-X github.com/demandpipe/demandpipe/internal/buildinfo." + v + "=" + buildArgs[arg]
		if !strings.Contains(img.build.flag("-ldflags"), x) {
			t.Errorf("build line -ldflags %q: want %q from ARG %s", img.build.flag("-ldflags"), x, arg)
		}
	}
	if !slices.Contains(img.build.args, "-trimpath") {
		t.Errorf("build line %q: no -trimpath", img.build.args)
	}
	// A release leaves the test servers out (internal/doubles).
	if img.build.flag("-tags") != "nodoubles" {
		t.Errorf("build line %q: want -tags nodoubles (no test server in a release image)", img.build.args)
	}

	// The runtime stage.
	user := img.final.last("USER")
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root UID (a name needs /etc/passwd; Kubernetes runAsNonRoot checks a number)", user)
	}
	var entry []string
	if err := json.Unmarshal([]byte(img.final.last("ENTRYPOINT")), &entry); err != nil || len(entry) != 1 {
		t.Fatalf("ENTRYPOINT %q: want [\"/path/demandpipe\"] (%v)", img.final.last("ENTRYPOINT"), err)
	}
	if entry[0] != img.copyDst {
		t.Errorf("ENTRYPOINT %s is not the binary copied from the builder (%s)", entry[0], img.copyDst)
	}
	port := img.final.last("EXPOSE")
	if port != "8080" {
		t.Errorf("EXPOSE %q, want 8080", port)
	}
	cmd := img.cmd(t)
	if len(cmd) == 0 || cmd[0] != "run" {
		t.Fatalf("CMD %q: want run …", cmd)
	}
	volume := img.volume(t)
	for _, a := range cmd {
		if v, ok := strings.CutPrefix(a, "-serve="); ok {
			host, p, err := net.SplitHostPort(v)
			if err != nil || p != port || host == "127.0.0.1" || host == "localhost" {
				t.Errorf("CMD %s: want every interface on the EXPOSEd port %s (:%s), or docker -p reaches nothing", a, port, port)
			}
		}
		if v, ok := strings.CutPrefix(a, "-sink=store:"); ok && !strings.HasPrefix(v, volume+"/") {
			t.Errorf("CMD %s: the store is not under the VOLUME %s", a, volume)
		}
	}

	// HEALTHCHECK [--options] CMD ["demandpipe", "healthcheck", "-url=…/readyz", …]
	hc := img.final.only(t, "HEALTHCHECK")
	opt := map[string]time.Duration{}
	for _, f := range hc.flags {
		k, v, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		d, err := time.ParseDuration(v)
		if err != nil && k != "retries" {
			t.Errorf("HEALTHCHECK %s: %v", f, err)
		}
		opt[k] = d
	}
	rest, ok := strings.CutPrefix(hc.args, "CMD ")
	var argv []string
	if !ok || json.Unmarshal([]byte(rest), &argv) != nil || len(argv) < 2 {
		t.Fatalf("HEALTHCHECK %s: want CMD [\"%s\", \"healthcheck\", …] (exec form: no shell in the image)", hc.args, img.copyDst)
	}
	if argv[0] != img.copyDst || argv[1] != "healthcheck" {
		t.Errorf("HEALTHCHECK runs %q, want %s healthcheck", argv, img.copyDst)
	}
	u, err := url.Parse(flagValue(argv[2:], "-url"))
	if err != nil || u.Path != "/readyz" || u.Port() != port {
		t.Errorf("HEALTHCHECK %q: want -url=http://127.0.0.1:%s/readyz", argv, port)
	}
	if d, err := time.ParseDuration(flagValue(argv[2:], "-timeout")); err != nil || opt["timeout"] <= d {
		t.Errorf("HEALTHCHECK --timeout=%s with -timeout=%s: docker's must be the longer, or it kills the check before the check reports", opt["timeout"], flagValue(argv[2:], "-timeout"))
	}
	// /readyz is 503 until a minute closes: lateness (30 s) past the end
	// of the first minute, up to 90 s after start.
	if opt["start-period"] < 90*time.Second {
		t.Errorf("HEALTHCHECK --start-period=%s: the first minute closes up to 90 s after start", opt["start-period"])
	}
}

// TestDockerfileBuildsLikeMake: the image's build line is `make build`'s:
// the same environment and arguments, but for the output path.
func TestDockerfileBuildsLikeMake(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	args := []string{"-s", "-n", "-C", repoRoot, "build"}
	for k, v := range buildArgs {
		args = append(args, k+"="+v)
	}
	out, err := exec.Command("make", args...).Output()
	if err != nil {
		t.Fatalf("make -n build: %v", err)
	}
	words, err := shellWords(strings.TrimSpace(string(out)), nil)
	if err != nil {
		t.Fatalf("make -n build printed %q: %v", out, err)
	}
	mk, err := parseGoBuild(words)
	if err != nil {
		t.Fatalf("make -n build printed %q: %v", out, err)
	}
	img := loadImage(t)
	if !slices.Equal(mk.withoutOutput(), img.build.withoutOutput()) || !maps.Equal(mk.env, img.build.env) {
		t.Errorf("the Dockerfile builds with\n  %v go %q\nmake build with\n  %v go %q", img.build.env, img.build.withoutOutput(), mk.env, mk.withoutOutput())
	}
}

// TestDockerBuildContext: .dockerignore keeps the repository's binaries,
// .git and data out of the context and everything the build reads in.
func TestDockerBuildContext(t *testing.T) {
	t.Parallel()
	ig := loadDockerignore(t)
	for _, p := range []string{".git/HEAD", "bin/demandpipe", "demandpipe", "cmd/demandpipe/demandpipe", "demandpipe-data/MANIFEST", "store/demandpipe-data/x", "serve/testdata/screenshots/fixture.png", "x/y.test"} {
		if !ig.excluded(p) {
			t.Errorf("%s is in the build context", p)
		}
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/demandpipe/main.go", "serve/web/index.html", "internal/buildinfo/buildinfo.go", "demandpipe.go"} {
		if ig.excluded(p) {
			t.Errorf("%s is left out of the build context", p)
		}
	}
}

// TestDockerBuild runs the builder stage's `go build` line, with the test's
// build args, on a copy of the build context made by .dockerignore's rules,
// and runs what it built: `version` names the stamped version, commit and
// date; `healthcheck` exits 0 on 200 and 1 with one line on stderr on 503;
// `help healthcheck` explains its flags.
func TestDockerBuild(t *testing.T) {
	bin := binary(t)
	t.Logf("context of %d files, %d KiB; built in %v", built.files, built.bytes>>10, built.took.Round(time.Millisecond))
	out, _, code := runBin(t, bin, "version")
	for _, v := range buildArgs {
		if code != 0 || !strings.Contains(out, " "+v+" ") {
			t.Errorf("version: %q (exit %d), want %s in it", out, code, v)
		}
	}
	if strings.Contains(out, "(modified)") {
		t.Errorf("version: %q: a build from a clean tag is not modified", out)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			w.Write([]byte(`{"status":"ready"}` + "\n"))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"status":"no closed minute yet"}` + "\n"))
	}))
	defer srv.Close()
	if out, errOut, code := runBin(t, bin, "healthcheck", "-url="+srv.URL+"/readyz"); code != 0 || out != "" || errOut != "" {
		t.Errorf("healthcheck on 200: exit %d, stdout %q, stderr %q; want 0 and nothing", code, out, errOut)
	}
	_, errOut, code := runBin(t, bin, "healthcheck", "-url="+srv.URL+"/notready", "-timeout=5s")
	if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "demandpipe healthcheck: ") || !strings.Contains(errOut, "503") {
		t.Errorf("healthcheck on 503: exit %d, stderr %q; want 1 and one line naming the status", code, errOut)
	}
	if out, _, code := runBin(t, bin, "help", "healthcheck"); code != 0 || !strings.Contains(out, "-url") || !strings.Contains(out, "-timeout") {
		t.Errorf("help healthcheck: exit %d:\n%s", code, out)
	}
}

// TestImageCommand runs the image's CMD as the container would (the volume
// and the port moved to the test's), checks its HEALTHCHECK says "not ready"
// until a minute closes while /healthz answers, and stops it with the
// image's STOPSIGNAL: it exits 0.
func TestImageCommand(t *testing.T) {
	bin := binary(t)
	img := loadImage(t)
	dir := t.TempDir()
	volume := img.volume(t)
	var args []string
	for _, a := range img.cmd(t) {
		a = strings.ReplaceAll(a, volume, dir)
		if v, ok := strings.CutPrefix(a, "-serve="); ok {
			host, _, _ := net.SplitHostPort(v)
			a = "-serve=" + net.JoinHostPort(host, "0")
		}
		args = append(args, a)
	}
	if sig := img.final.last("STOPSIGNAL"); sig != "SIGTERM" {
		t.Errorf("STOPSIGNAL %q: run stops gracefully on SIGTERM", sig)
	}
	r := startRun(t, bin, dir, args...)
	_, port, _ := net.SplitHostPort(r.addr)
	var hc []string
	if err := json.Unmarshal([]byte(strings.TrimPrefix(img.final.only(t, "HEALTHCHECK").args, "CMD ")), &hc); err != nil || len(hc) < 2 {
		t.Fatalf("HEALTHCHECK: %v (TestDockerfile says more)", err)
	}
	for i, a := range hc {
		hc[i] = strings.Replace(a, ":"+img.final.last("EXPOSE")+"/", ":"+port+"/", 1)
	}
	_, errOut, code := runBin(t, bin, hc[1:]...)
	if code != 1 || !strings.Contains(errOut, "no closed minute yet") {
		t.Errorf("%q before the first minute closes: exit %d, %q; want 1, not ready", hc, code, errOut)
	}
	if _, errOut, code := runBin(t, bin, "healthcheck", "-url=http://127.0.0.1:"+port+"/healthz"); code != 0 {
		t.Errorf("healthcheck /healthz: exit %d, %q", code, errOut)
	}
	r.stop(t)
}

// TestExampleConfig: deploy/demandpipe.yaml loads, with every commented
// default uncommented too (so none names a flag run no longer has), and a
// run with it serves and stops cleanly on SIGTERM.
func TestExampleConfig(t *testing.T) {
	bin := binary(t)
	if _, errOut, code := runBin(t, bin, "run", "-config=demandpipe.yaml", "-h"); code != 0 {
		t.Fatalf("run -config=demandpipe.yaml -h: exit %d\n%s", code, errOut)
	}
	b, err := os.ReadFile("demandpipe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	commented := regexp.MustCompile(`(?m)^#([a-z][a-z0-9.-]*): `)
	all := filepath.Join(t.TempDir(), "all.yaml")
	if err := os.WriteFile(all, commented.ReplaceAll(b, []byte("$1: ")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runBin(t, bin, "run", "-config="+all, "-h"); code != 0 {
		t.Fatalf("demandpipe.yaml with its defaults uncommented: exit %d\n%s", code, errOut)
	}

	// Every knob is in it; a new one is only noted (it has its default).
	keys := map[string]bool{}
	for _, m := range commented.FindAllSubmatch(b, -1) {
		keys[string(m[1])] = true
	}
	for k := range exampleConfig(t) {
		keys[k] = true
	}
	out, _, code := runBin(t, bin, "config", "-format=json")
	var knobs []struct{ Flag string }
	if err := json.Unmarshal([]byte(out), &knobs); code != 0 || err != nil {
		t.Fatalf("config -format=json: exit %d, %v", code, err)
	}
	var missing []string
	for _, k := range knobs {
		if name := strings.TrimPrefix(k.Flag, "-"); name != "config" && !keys[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Logf("deploy/demandpipe.yaml lists no %s: regenerate it from `demandpipe config -format=yaml` (see its header)", strings.Join(missing, ", "))
	}

	dir := t.TempDir()
	r := startRun(t, bin, dir, "run", "-config="+filepath.Join(mustAbs(t, "."), "demandpipe.yaml"),
		"-sink=store:"+filepath.Join(dir, "features"), "-serve=127.0.0.1:0")
	if _, errOut, code := runBin(t, bin, "healthcheck", "-url=http://"+r.addr+"/healthz"); code != 0 {
		t.Errorf("healthcheck /healthz: exit %d, %q", code, errOut)
	}
	r.stop(t)
}

// TestSystemdUnit checks deploy/demandpipe.service: its command, its
// hardening, a stop timeout longer than the graceful stop, and what
// `systemd-analyze verify` says of it (nothing) and `security` scores.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("demandpipe.service")
	if err != nil {
		t.Fatal(err)
	}
	unit, err := parseUnit(string(b))
	if err != nil {
		t.Fatal(err)
	}
	svc := unit["Service"]
	last := func(k string) string {
		if v := svc[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return "(unset)"
	}
	for k, want := range map[string]string{
		"ExecStart":               "/usr/local/bin/demandpipe run -config=/etc/demandpipe/demandpipe.yaml",
		"User":                    "demandpipe",
		"StateDirectory":          "demandpipe",
		"WorkingDirectory":        "/var/lib/demandpipe",
		"Restart":                 "on-failure",
		"KillSignal":              "SIGTERM",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"LimitNOFILE":             "65536",
	} {
		if got := last(k); got != want {
			t.Errorf("[Service] %s=%s, want %s", k, got, want)
		}
	}
	if !slices.Contains(svc["SystemCallFilter"], "@system-service") {
		t.Errorf("[Service] SystemCallFilter=%q: want @system-service", svc["SystemCallFilter"])
	}
	if last("ProcSubset") == "pid" {
		t.Error("[Service] ProcSubset=pid hides /proc/meminfo, which -max-memory's default reads")
	}
	// The example config's store is in the StateDirectory, the one place
	// ProtectSystem=strict leaves writable.
	conf := exampleConfig(t)
	if s := conf["sink"]; !strings.HasPrefix(s, "store:/var/lib/"+last("StateDirectory")+"/") {
		t.Errorf("demandpipe.yaml sink: %s, want a store under the unit's StateDirectory /var/lib/%s", s, last("StateDirectory"))
	}
	stop, err := systemdDuration(last("TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	graceful, err := time.ParseDuration(conf["shutdown-timeout"])
	if err != nil {
		t.Fatalf("demandpipe.yaml shutdown-timeout: %v", err)
	}
	// run forces its exit -shutdown-timeout after the signal; then the
	// server has 5 s. systemd must not SIGKILL it before.
	if stop <= graceful+5*time.Second {
		t.Errorf("TimeoutStopSec=%s: want more than shutdown-timeout %s + 5 s", stop, graceful)
	}

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze: the unit is not verified")
	}
	// verify refuses a unit whose ExecStart does not exist ("Command
	// /usr/local/bin/demandpipe is not executable"), and demandpipe is not
	// installed here: the copy runs /bin/true instead, with the same
	// arguments and every other line as shipped. The copy keeps the name:
	// the unit's name is its file's.
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "demandpipe.service")
	shipped := strings.Replace(string(b), "\nExecStart=/usr/local/bin/demandpipe ", "\nExecStart=/bin/true ", 1)
	if shipped == string(b) {
		t.Fatal("no ExecStart=/usr/local/bin/demandpipe … line to point at /bin/true")
	}
	if err := os.WriteFile(copyPath, []byte(shipped), 0o644); err != nil {
		t.Fatal(err)
	}
	if msgs, err := verifyUnit(copyPath); err != nil || len(msgs) > 0 {
		t.Errorf("systemd-analyze verify (%v) says of the unit:\n%s", err, strings.Join(msgs, "\n"))
	}
	// The check can fail: a misspelt directive is reported.
	bad := filepath.Join(t.TempDir(), "demandpipe.service")
	if err := os.WriteFile(bad, []byte(strings.Replace(shipped, "\nProtectHome=yes\n", "\nProtectHome=yes\nProtectHomme=yes\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if msgs, _ := verifyUnit(bad); len(msgs) == 0 {
		t.Error("systemd-analyze verify says nothing of ProtectHomme=yes: the check above cannot fail")
	}

	out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", copyPath).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for demandpipe\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Logf("systemd-analyze security --offline=true: %v (no score)\n%s", err, out)
		return
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f (0 is locked down, 10 is unprotected)", score)
	if score > 2.0 {
		t.Errorf("exposure %.1f, want at most 2.0:\n%s", score, out)
	}
}

// verifyUnit runs `systemd-analyze verify` on the unit file p and returns
// what it says of that unit (lines about other units, such as the targets
// it names, are the machine's business).
func verifyUnit(p string) ([]string, error) {
	out, err := exec.Command("systemd-analyze", "verify", p).CombinedOutput()
	var msgs []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, filepath.Base(p)) {
			msgs = append(msgs, l)
		}
	}
	return msgs, err
}

// parseUnit reads a systemd unit file: section, key, its values in order
// (a key may repeat: SystemCallFilter=). Comments start with # or ;.
func parseUnit(text string) (map[string]map[string][]string, error) {
	u := map[string]map[string][]string{}
	var sec map[string][]string
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			name := l[1 : len(l)-1]
			if u[name] == nil {
				u[name] = map[string][]string{}
			}
			sec = u[name]
		case strings.HasSuffix(l, `\`):
			return nil, fmt.Errorf("demandpipe.service:%d: continued lines are not read by this test", i+1)
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || sec == nil {
				return nil, fmt.Errorf("demandpipe.service:%d: %q", i+1, l)
			}
			k = strings.TrimSpace(k)
			sec[k] = append(sec[k], strings.TrimSpace(v))
		}
	}
	return u, nil
}

// systemdDuration parses a systemd time span of the simple kinds: "90",
// "90s", "1min 30s", "2min".
func systemdDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(strings.ReplaceAll(strings.ReplaceAll(s, " ", ""), "min", "m"))
}

// exampleConfig reads the active (uncommented) keys of demandpipe.yaml.
func exampleConfig(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("demandpipe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("demandpipe.yaml: %v", err)
	}
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}
