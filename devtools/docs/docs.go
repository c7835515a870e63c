// Package docs checks the project's Markdown documentation against the repository it describes:
// that its links lead somewhere, that the code paths it names exist, and that the services
// catalog covers every service and method of the contracts.
//
// A backticked span is taken for a repository path, and must exist, when it has no spaces and
// no placeholder characters (< > * { } [ ] $ | = , ;) and either
//   - its first segment, before the first slash, is an entry at the repository's root that git
//     tracks or would track (so `services/blog/internal/store/store.go`, `.ci/run` and
//     `Taskfile.yml` are checked, while `/v1/posts`, `.data/up.json`, `github.com/...` and
//     `blog.posts.create` are not), unless git ignores it (a build output such as
//     `console/dist`), or
//   - it has no slash and ends in one of the extensions in pathExtensions, in which case a file
//     of that name must exist somewhere in the repository (`console_test.go`).
//
// A leading "./", a trailing "/", a trailing "/..." (a Go package pattern) and a trailing
// ":<line>" are dropped before the check.
//
// A backticked span that looks like a Go test, benchmark or fuzz function (`TestWithTx`,
// `BenchmarkCheck`, `FuzzVerify`: the prefix, then an upper-case letter, then letters, digits
// or underscores) must be defined in one of the repository's _test.go files, so that a document
// never cites a test that was renamed or removed. Spans inside fenced code blocks are not checked:
// they are commands and listings, not references.
package docs

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode"
)

// pathExtensions are the file extensions that make a slash-less backticked span a file name.
var pathExtensions = []string{".go", ".md", ".proto", ".yaml", ".yml", ".ts", ".sh", ".png", ".json", ".html", ".txt"}

// Problem is one thing a document gets wrong, located by file (relative to the repository
// root) and line.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg) }

// Repo is the repository the documents are checked against.
type Repo struct {
	// Root is the repository's folder on disk.
	Root string
	// Files are the repository's file paths, slash-separated and relative to Root: the files git
	// tracks plus the untracked ones it does not ignore.
	Files []string
	// Ignored reports whether git ignores a path, such as a build output (`console/dist`) that a
	// document may name although a clean checkout does not have it. Nil ignores nothing.
	Ignored func(rel string) bool

	top   map[string]bool
	bases map[string]bool

	testsOnce sync.Once
	tests     map[string]bool
	testsErr  error
}

// NewRepo returns a Repo for root whose files are files.
func NewRepo(root string, files []string) *Repo {
	r := &Repo{Root: root, Files: files, top: map[string]bool{}, bases: map[string]bool{}}
	for _, f := range files {
		first, _, _ := strings.Cut(f, "/")
		r.top[first] = true
		r.bases[path.Base(f)] = true
	}
	return r
}

// Documents returns the Markdown files to check: README.md and everything under docs/.
func (r *Repo) Documents() []string {
	var out []string
	for _, f := range r.Files {
		if f == "README.md" || (strings.HasPrefix(f, "docs/") && strings.HasSuffix(f, ".md")) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

// exists reports whether rel (slash-separated, relative to the root) is a file or folder on
// disk.
func (r *Repo) exists(rel string) bool {
	_, err := os.Stat(filepath.Join(r.Root, filepath.FromSlash(rel)))
	return err == nil
}

// testFuncs returns the names of the test, benchmark and fuzz functions the repository's
// _test.go files define, read once.
func (r *Repo) testFuncs() (map[string]bool, error) {
	r.testsOnce.Do(func() {
		r.tests = map[string]bool{}
		for _, f := range r.Files {
			if !strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(r.Root, filepath.FromSlash(f)))
			if err != nil {
				r.testsErr = err
				return
			}
			for _, m := range testFunc.FindAllSubmatch(b, -1) {
				r.tests[string(m[1])] = true
			}
		}
	})
	return r.tests, r.testsErr
}

// line is one line of a document outside fenced code blocks, with inline code spans kept.
type line struct {
	n    int
	text string
}

// proseLines returns the lines of a document that are not inside fenced code blocks, because
// what a listing shows is not a link or a reference.
func proseLines(text string) []line {
	var out []line
	fence := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		s := sc.Text()
		trimmed := strings.TrimLeft(s, " ")
		if fence == "" && (strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~")) {
			fence = trimmed[:3]
			continue
		}
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		out = append(out, line{n: n, text: s})
	}
	return out
}

var (
	codeSpan = regexp.MustCompile("`([^`]+)`")
	// link matches an inline link or image, [text](target) or [text](target "title"); the text
	// may not contain brackets, which the documents do not use.
	link        = regexp.MustCompile(`\[[^\[\]]*\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)
	placeholder = regexp.MustCompile(`[<>*{}\[\]$|=,;]`)
	testName    = regexp.MustCompile(`^(Test|Benchmark|Fuzz)[A-Z][A-Za-z0-9_]*$`)
	testFunc    = regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Fuzz)[A-Z][A-Za-z0-9_]*)\(`)
	lineSuffix  = regexp.MustCompile(`:\d+$`)
)

// CheckDocument returns the problems of the document at rel: links to files or headings that
// do not exist, and backticked repository paths that do not exist.
func (r *Repo) CheckDocument(rel string) ([]Problem, error) {
	b, err := os.ReadFile(filepath.Join(r.Root, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	var problems []Problem
	report := func(n int, format string, args ...any) {
		problems = append(problems, Problem{File: rel, Line: n, Msg: fmt.Sprintf(format, args...)})
	}
	// A link's text may wrap onto the next line, so links are found in the prose joined back
	// together, and located by the line their target is on.
	lines := proseLines(string(b))
	for i, l := range lines {
		joined := l.text
		if i > 0 {
			joined = lines[i-1].text + " " + l.text
		}
		for _, m := range link.FindAllStringSubmatchIndex(joined, -1) {
			if i > 0 && m[2] < len(lines[i-1].text)+1 {
				continue // the whole link is on the previous line, which reported it
			}
			target := joined[m[2]:m[3]]
			if msg := r.checkLink(rel, target); msg != "" {
				report(l.n, "%s", msg)
			}
		}
		withoutLinks := link.ReplaceAllString(l.text, "")
		for _, m := range codeSpan.FindAllStringSubmatch(withoutLinks, -1) {
			if testName.MatchString(m[1]) {
				tests, err := r.testFuncs()
				if err != nil {
					return nil, err
				}
				if !tests[m[1]] {
					report(l.n, "`%s` names a test that no _test.go file defines", m[1])
				}
				continue
			}
			switch p, kind := r.pathOf(m[1]); {
			case kind == repoPath && !r.exists(p) && (r.Ignored == nil || !r.Ignored(p)):
				report(l.n, "`%s` names a path that does not exist", m[1])
			case kind == fileName && !r.bases[p]:
				report(l.n, "`%s` names a file that is nowhere in the repository", m[1])
			}
		}
	}
	return problems, nil
}

// spanKind says what a backticked span names.
type spanKind int

const (
	notPath  spanKind = iota
	repoPath          // a path from the repository's root
	fileName          // a file name without a folder
)

// pathOf returns the path a backticked span names and what kind of name it is, following the
// rule in the package comment.
func (r *Repo) pathOf(span string) (string, spanKind) {
	if strings.ContainsFunc(span, unicode.IsSpace) || placeholder.MatchString(span) {
		return "", notPath
	}
	p := strings.TrimPrefix(span, "./")
	p = strings.TrimSuffix(p, "/...")
	p = lineSuffix.ReplaceAllString(p, "")
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return "", notPath
	}
	if first, _, hasSlash := strings.Cut(p, "/"); hasSlash {
		if r.top[first] {
			return p, repoPath
		}
		return "", notPath
	}
	if r.top[p] {
		return p, repoPath
	}
	for _, ext := range pathExtensions {
		if strings.HasSuffix(p, ext) && len(p) > len(ext) {
			return p, fileName
		}
	}
	return "", notPath
}

// checkLink returns what is wrong with a link from the document at rel to target, or "".
// Links with a scheme (https:, mailto:) are not followed.
func (r *Repo) checkLink(rel, target string) string {
	if i := strings.Index(target, ":"); i > 0 && !strings.ContainsAny(target[:i], "/#.") {
		return ""
	}
	file, anchor, _ := strings.Cut(target, "#")
	dest := rel
	if file != "" {
		dest = path.Clean(path.Join(path.Dir(rel), file))
		if strings.HasPrefix(dest, "../") || dest == ".." {
			return fmt.Sprintf("link %q leaves the repository", target)
		}
		if !r.exists(dest) {
			return fmt.Sprintf("link %q: %s does not exist", target, dest)
		}
	}
	if anchor == "" || !strings.HasSuffix(dest, ".md") {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(r.Root, filepath.FromSlash(dest)))
	if err != nil {
		return fmt.Sprintf("link %q: %v", target, err)
	}
	if !slices.Contains(Anchors(string(b)), anchor) {
		return fmt.Sprintf("link %q: %s has no heading with the anchor #%s", target, dest, anchor)
	}
	return ""
}

// Anchors returns the anchors a Markdown document's headings get on GitHub: lower case,
// punctuation but hyphens and underscores dropped, spaces turned into hyphens, and "-1", "-2"
// added to repeats.
func Anchors(text string) []string {
	var out []string
	seen := map[string]int{}
	for _, l := range proseLines(text) {
		s := strings.TrimLeft(l.text, " ")
		if !strings.HasPrefix(s, "#") {
			continue
		}
		title := strings.TrimLeft(s, "#")
		if title == "" || title[0] != ' ' {
			continue
		}
		title = strings.ReplaceAll(strings.TrimSpace(title), "`", "")
		var b strings.Builder
		for _, c := range strings.ToLower(title) {
			switch {
			case unicode.IsLetter(c) || unicode.IsDigit(c) || c == '-' || c == '_':
				b.WriteRune(c)
			case c == ' ':
				b.WriteRune('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out = append(out, fmt.Sprintf("%s-%d", a, n))
		} else {
			out = append(out, a)
		}
		seen[a]++
	}
	return out
}

// Service is a service of the contracts and the names of its methods.
type Service struct {
	FullName string
	Methods  []string
}

// CheckCatalog returns what the services catalog (the text of a document) leaves out: each
// service must have a heading naming its full name in backticks, and each of its methods must
// appear in backticks in that heading's section (up to the next heading of the same or a
// higher level).
func CheckCatalog(file, text string, services []Service) []Problem {
	type heading struct {
		line  int // 1-based
		level int
		index int // into lines
	}
	lines := proseLines(text)
	var headings []heading
	for i, l := range lines {
		if strings.HasPrefix(l.text, "#") {
			level := len(l.text) - len(strings.TrimLeft(l.text, "#"))
			headings = append(headings, heading{line: l.n, level: level, index: i})
		}
	}
	// sectionOf returns the text under the first heading that contains name, down to the next
	// heading of the same or a higher level.
	sectionOf := func(name string) (string, int, bool) {
		for hi, h := range headings {
			if !strings.Contains(lines[h.index].text, name) {
				continue
			}
			end := len(lines)
			for _, next := range headings[hi+1:] {
				if next.level <= h.level {
					end = next.index
					break
				}
			}
			var b strings.Builder
			for _, l := range lines[h.index:end] {
				b.WriteString(l.text)
				b.WriteByte('\n')
			}
			return b.String(), h.line, true
		}
		return "", 0, false
	}
	var problems []Problem
	for _, svc := range services {
		name := "`" + svc.FullName + "`"
		body, at, ok := sectionOf(name)
		if !ok {
			problems = append(problems, Problem{File: file, Msg: fmt.Sprintf("no heading names %s", name)})
			continue
		}
		for _, m := range svc.Methods {
			if !strings.Contains(body, "`"+m+"`") {
				problems = append(problems, Problem{File: file, Line: at,
					Msg: fmt.Sprintf("the section of %s does not name its method `%s`", name, m)})
			}
		}
	}
	return problems
}
