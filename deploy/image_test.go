package deploy

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Reading the Dockerfile and .dockerignore, and building as the image does.

var built struct {
	once  sync.Once
	bin   string
	files int
	bytes int64
	took  time.Duration
	err   error
}

// binary is demandpipe as the Dockerfile's builder stage builds it, built
// once for the tests that run it.
func binary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() { built.err = buildAsDockerfile() })
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

func buildAsDockerfile() error {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		return err
	}
	img, err := newImage(string(b))
	if err != nil {
		return err
	}
	ib, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		return err
	}
	ig, err := parseDockerignore(string(ib))
	if err != nil {
		return err
	}
	ctxDir, outDir := filepath.Join(tmpRoot, "context"), filepath.Join(tmpRoot, "out")
	if built.files, built.bytes, err = copyContext(repoRoot, ctxDir, ig); err != nil {
		return fmt.Errorf("copying the build context: %w", err)
	}
	if built.bytes > 32<<20 {
		return fmt.Errorf("the build context is %d MiB: .dockerignore misses something large", built.bytes>>20)
	}
	built.bin = filepath.Join(outDir, path.Base(img.build.output))
	args := img.build.withOutput(built.bin)
	goBin, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	cmd := exec.Command(goBin, args...)
	cmd.Dir = ctxDir // WORKDIR, after COPY . .
	cmd.Env = append(os.Environ(), "GOWORK=off")
	for k, v := range img.build.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("the Dockerfile's build line, go %q: %v\n%s", args, err, out)
	}
	built.took = time.Since(start)
	return nil
}

// image is the Dockerfile, read: its stages and the parts the tests use.
type image struct {
	df             *dockerfile
	builder, final *stage
	build          goBuild // the builder stage's `go build` line
	copyDst        string  // where the runtime stage puts the binary
}

func loadImage(t *testing.T) *image {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := newImage(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func newImage(text string) (*image, error) {
	df, err := parseDockerfile(text)
	if err != nil {
		return nil, err
	}
	if len(df.stages) == 0 {
		return nil, fmt.Errorf("Dockerfile: no FROM")
	}
	img := &image{df: df, final: &df.stages[len(df.stages)-1]}
	// COPY --from=BUILDER /out/demandpipe /usr/local/bin/demandpipe
	var src string
	for _, in := range img.final.ins {
		if in.cmd != "COPY" {
			continue
		}
		from := flagValue(in.flags, "--from")
		f := strings.Fields(in.args)
		if from == "" || len(f) != 2 || path.Base(f[0]) != "demandpipe" {
			continue
		}
		for i := range df.stages {
			if df.stages[i].name == from {
				img.builder = &df.stages[i]
			}
		}
		src, img.copyDst = f[0], f[1]
	}
	if img.builder == nil {
		return nil, fmt.Errorf("Dockerfile: the last stage copies no demandpipe binary from a named builder stage")
	}
	vars := map[string]string{}
	var builds []goBuild
	for _, in := range img.builder.ins {
		switch in.cmd {
		case "ARG":
			k, def, _ := strings.Cut(in.args, "=")
			if v, ok := buildArgs[k]; ok {
				def = v
			}
			vars[k] = def
		case "ENV":
			k, v, ok := strings.Cut(in.args, "=")
			if !ok {
				return nil, fmt.Errorf("Dockerfile:%d: ENV %s: want KEY=value", in.line, in.args)
			}
			vars[k] = v
		case "RUN":
			words, err := shellWords(in.args, vars)
			if err != nil {
				return nil, fmt.Errorf("Dockerfile:%d: RUN %s: %v", in.line, in.args, err)
			}
			if gb, err := parseGoBuild(words); err == nil {
				builds = append(builds, gb)
			}
		}
	}
	if len(builds) != 1 {
		return nil, fmt.Errorf("Dockerfile: %d `go build` lines in stage %s, want 1", len(builds), img.builder.name)
	}
	img.build = builds[0]
	if img.build.output != src {
		return nil, fmt.Errorf("Dockerfile: the build writes %s, the last stage copies %s", img.build.output, src)
	}
	return img, nil
}

// cmd is the runtime stage's CMD, in exec form.
func (img *image) cmd(t *testing.T) []string {
	t.Helper()
	var cmd []string
	if err := json.Unmarshal([]byte(img.final.last("CMD")), &cmd); err != nil {
		t.Fatalf("CMD %s: want exec form [\"run\", …]: %v", img.final.last("CMD"), err)
	}
	return cmd
}

// volume is the runtime stage's one VOLUME.
func (img *image) volume(t *testing.T) string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(img.final.last("VOLUME")), &v); err != nil || len(v) != 1 {
		t.Fatalf("VOLUME %s: want [\"/var/lib/demandpipe\"] (%v)", img.final.last("VOLUME"), err)
	}
	return v[0]
}

// goBuild is `[NAME=value…] go build ARGS…`.
type goBuild struct {
	env    map[string]string
	args   []string // after "go"
	output string   // -o
}

func parseGoBuild(words []string) (goBuild, error) {
	gb := goBuild{env: map[string]string{}}
	for len(words) > 0 && strings.Contains(words[0], "=") && shellName.MatchString(strings.SplitN(words[0], "=", 2)[0]) {
		k, v, _ := strings.Cut(words[0], "=")
		gb.env[k] = v
		words = words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		return gb, fmt.Errorf("not a go build: %q", words)
	}
	gb.args = words[1:]
	gb.output = gb.flag("-o")
	if gb.output == "" {
		return gb, fmt.Errorf("go build without -o: %q", words)
	}
	return gb, nil
}

// flag is the value of go build's flag name (-name value or -name=value).
func (gb goBuild) flag(name string) string { return flagValue(gb.args, name) }

// withOutput is the arguments with -o's value replaced by out.
func (gb goBuild) withOutput(out string) []string {
	args := slices.Clone(gb.args)
	for i, a := range args {
		if a == "-o" && i+1 < len(args) {
			args[i+1] = out
		} else if strings.HasPrefix(a, "-o=") {
			args[i] = "-o=" + out
		}
	}
	return args
}

func (gb goBuild) withoutOutput() []string { return gb.withOutput("OUT") }

// flagValue finds -name=value or -name value in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func goModVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod: no go directive")
	}
	return string(m[1])
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// --- a Dockerfile parser, for what this Dockerfile uses

type instruction struct {
	line  int      // where it starts, 1-based
	cmd   string   // FROM, RUN, …
	flags []string // the leading --name=value words
	args  string   // the rest, continuation lines joined
}

type stage struct {
	from, name string
	ins        []instruction
}

type dockerfile struct {
	args   []instruction // ARGs before the first FROM
	stages []stage
}

// last is the last value of the stage's instruction cmd, "" if none.
func (s *stage) last(cmd string) string {
	v := ""
	for _, in := range s.ins {
		if in.cmd == cmd {
			v = in.args
		}
	}
	return v
}

// only is the stage's one instruction cmd.
func (s *stage) only(t *testing.T, cmd string) instruction {
	t.Helper()
	var found []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			found = append(found, in)
		}
	}
	if len(found) != 1 {
		t.Fatalf("stage %s: %d %s instructions, want 1", s.name, len(found), cmd)
	}
	return found[0]
}

// parseDockerfile splits text into instructions: comment and blank lines
// dropped (also inside a continuation, as docker does), lines ending in a
// backslash joined to the next.
func parseDockerfile(text string) (*dockerfile, error) {
	df := &dockerfile{}
	var cur strings.Builder
	start := 0
	emit := func() error {
		s := cur.String()
		cur.Reset()
		word, rest, _ := strings.Cut(s, " ")
		in := instruction{line: start, cmd: strings.ToUpper(word)}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			var f string
			f, rest, _ = strings.Cut(rest, " ")
			in.flags = append(in.flags, f)
			rest = strings.TrimSpace(rest)
		}
		in.args = rest
		if in.cmd == "FROM" {
			st := stage{}
			f := strings.Fields(rest)
			switch {
			case len(f) == 1:
				st.from = f[0]
			case len(f) == 3 && strings.EqualFold(f[1], "AS"):
				st.from, st.name = f[0], f[2]
			default:
				return fmt.Errorf("Dockerfile:%d: FROM %s", start, rest)
			}
			df.stages = append(df.stages, st)
			return nil
		}
		if len(df.stages) == 0 {
			if in.cmd != "ARG" {
				return fmt.Errorf("Dockerfile:%d: %s before FROM", start, in.cmd)
			}
			df.args = append(df.args, in)
			return nil
		}
		st := &df.stages[len(df.stages)-1]
		st.ins = append(st.ins, in)
		return nil
	}
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(l, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		if err := emit(); err != nil {
			return nil, err
		}
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("Dockerfile:%d: ends inside a continued line", start)
	}
	return df, nil
}

var shellName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// shellWords splits a simple shell command into words as sh would: blanks
// between words, '…' literal, "…" with $NAME and ${NAME} from vars and
// backslash escapes. Anything else a shell does (;, &&, |, redirections,
// $(…), globs, ${NAME:-…}, an unset variable) is refused: the test runs
// the words itself, so it must know them exactly.
func shellWords(s string, vars map[string]string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	expand := func(i int) (int, error) { // s[i] == '$'
		name := ""
		j := i + 1
		if j < len(s) && s[j] == '{' {
			k := strings.IndexByte(s[j:], '}')
			if k < 0 {
				return 0, fmt.Errorf("unclosed ${")
			}
			name, j = s[j+1:j+k], j+k+1
		} else {
			for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || j > i+1 && s[j] >= '0' && s[j] <= '9') {
				j++
			}
			name = s[i+1 : j]
		}
		if !shellName.MatchString(name) {
			return 0, fmt.Errorf("unsupported expansion at %q", s[i:])
		}
		v, ok := vars[name]
		if !ok {
			return 0, fmt.Errorf("$%s is not set (no ARG or ENV before it)", name)
		}
		w.WriteString(v)
		return j, nil
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
			i++
		case c == '\'':
			k := strings.IndexByte(s[i+1:], '\'')
			if k < 0 {
				return nil, fmt.Errorf("unclosed '")
			}
			w.WriteString(s[i+1 : i+1+k])
			i, inWord = i+k+2, true
		case c == '"':
			inWord = true
			i++
			for {
				if i >= len(s) {
					return nil, fmt.Errorf(`unclosed "`)
				}
				c := s[i]
				if c == '"' {
					i++
					break
				}
				switch {
				case c == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\", s[i+1]) >= 0:
					w.WriteByte(s[i+1])
					i += 2
				case c == '$':
					j, err := expand(i)
					if err != nil {
						return nil, err
					}
					i = j
				case c == '`':
					return nil, fmt.Errorf("command substitution")
				default:
					w.WriteByte(c)
					i++
				}
			}
		case c == '$':
			j, err := expand(i)
			if err != nil {
				return nil, err
			}
			i, inWord = j, true
		case c == '\\' && i+1 < len(s):
			w.WriteByte(s[i+1])
			i, inWord = i+2, true
		case strings.IndexByte(";&|<>()`*?[]{}~#", c) >= 0:
			return nil, fmt.Errorf("%q: more than one simple command", c)
		default:
			w.WriteByte(c)
			i, inWord = i+1, true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// --- .dockerignore

// dockerignore is .dockerignore's patterns, as regular expressions over
// slash-separated paths from the context's root.
type dockerignore []*regexp.Regexp

func loadDockerignore(t *testing.T) dockerignore {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	ig, err := parseDockerignore(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return ig
}

// parseDockerignore reads the patterns docker's matcher knows that this
// file uses: *, ?, ** as a whole path element, anchored at the root. An
// exception (!) or a character class is refused rather than misread.
func parseDockerignore(text string) (dockerignore, error) {
	var ig dockerignore
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") || strings.ContainsAny(l, "[]") {
			return nil, fmt.Errorf(".dockerignore: %q: exceptions and classes are not read by this test", l)
		}
		p := strings.TrimPrefix(path.Clean(l), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(?:.*/)?")
				i += 3
			case p[i:] == "**":
				re.WriteString(".*")
				i += 2
			case p[i] == '*':
				re.WriteString("[^/]*")
				i++
			case p[i] == '?':
				re.WriteString("[^/]")
				i++
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
				i++
			}
		}
		re.WriteString("$")
		ig = append(ig, regexp.MustCompile(re.String()))
	}
	return ig, nil
}

// excluded says whether the context leaves out rel: a pattern matches it
// or one of its parent directories.
func (ig dockerignore) excluded(rel string) bool {
	parts := strings.Split(rel, "/")
	for i := 1; i <= len(parts); i++ {
		p := strings.Join(parts[:i], "/")
		for _, re := range ig {
			if re.MatchString(p) {
				return true
			}
		}
	}
	return false
}

// copyContext copies what the context holds from root to dst.
func copyContext(root, dst string, ig dockerignore) (files int, size int64, err error) {
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return os.MkdirAll(dst, 0o755)
		}
		if ig.excluded(filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, to)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files++
			size += int64(len(b))
			return os.WriteFile(to, b, info.Mode().Perm())
		}
		return nil
	})
	return files, size, err
}

// TestShellWords pins the reader of the build line: quotes and expansion
// as sh does them, and a refusal of anything it does not know.
func TestShellWords(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"V": "v1 x", "P": "github.com/a/b"}
	for _, c := range []struct {
		in   string
		want []string
	}{
		{`CGO_ENABLED=1 go build -ldflags "-X ${P}.v=$V" -o /out/x ./cmd/x`, []string{"CGO_ENABLED=1", "go", "build", "-ldflags", "-X github.com/a/b.v=v1 x", "-o", "/out/x", "./cmd/x"}},
		{`a  'b $V' "" c\ d "e\"f\$"`, []string{"a", "b $V", "", "c d", `e"f$`}},
		{`x$V`, []string{"xv1 x"}}, // unquoted: sh would split it; the Dockerfile quotes its values
	} {
		got, err := shellWords(c.in, vars)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("shellWords(%s) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{`go build && rm -rf /`, `go build; x`, `go build $(pwd)`, "go build `pwd`", `go build $UNSET`, `go build ${V:-x}`, `go build ./...*`, `go build "open`} {
		if got, err := shellWords(in, vars); err == nil {
			t.Errorf("shellWords(%s) = %q, want a refusal", in, got)
		}
	}
}
