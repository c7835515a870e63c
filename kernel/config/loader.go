// Package config loads typed, validated configuration from flags and the environment.
//
// Config is the only package that reads environment variables: every other package receives
// plain values through its constructor, which keeps them testable without touching the
// process environment. A setting is bound once, with its flag name, environment name, default
// and help text; a flag beats the environment, which beats the default. Every problem is
// collected and reported together, each naming the setting it concerns. Every program that
// loads its settings here answers -h, -help and --help alike: the usage on stdout, exit 0.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Secret holds a value that must never be printed: its String, GoString and LogValue methods
// all redact it. Use Reveal where the value is really needed.
type Secret struct {
	value string
}

// NewSecret wraps a value.
func NewSecret(v string) Secret { return Secret{value: v} }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return s.value }

// IsSet reports whether the secret holds a non-empty value.
func (s Secret) IsSet() bool { return s.value != "" }

// String redacts the value.
func (s Secret) String() string {
	if s.value == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts the value in %#v.
func (s Secret) GoString() string { return s.String() }

// LogValue redacts the value in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Loader binds settings to flags and environment variables and parses them.
type Loader struct {
	name     string
	fs       *flag.FlagSet
	args     []string
	lookup   func(string) (string, bool)
	bindings []*binding
	problems []string
	summary  string
	helpOut  io.Writer
	exit     func(code int)
}

type binding struct {
	flagName string
	envName  string
	def      string
	set      func(string) error
	secret   bool
	flagVal  *string
	flagSet  bool
}

// LoaderOption configures NewLoader.
type LoaderOption func(*Loader)

// WithSummary sets what the usage says of the program, above its settings.
func WithSummary(text string) LoaderOption { return func(l *Loader) { l.summary = text } }

// WithHelpExit sets where Load writes the usage when it is asked for help, and what ends the
// program then (default: os.Stdout and os.Exit), so that tests can watch it.
func WithHelpExit(out io.Writer, exit func(code int)) LoaderOption {
	return func(l *Loader) { l.helpOut, l.exit = out, exit }
}

// NewLoader returns a loader over the given command-line arguments (without the program name)
// and environment lookup (os.LookupEnv in production, a map in tests).
func NewLoader(name string, args []string, lookup func(string) (string, bool), opts ...LoaderOption) *Loader {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l := &Loader{name: name, fs: fs, args: args, lookup: lookup, helpOut: os.Stdout, exit: os.Exit}
	for _, opt := range opts {
		opt(l)
	}
	return l
}

// MapLookup adapts a map to the lookup function NewLoader takes.
func MapLookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

func (l *Loader) bind(flagName, envName, def, usage string, secret bool, set func(string) error) {
	b := &binding{flagName: flagName, envName: envName, def: def, set: set, secret: secret}
	if flagName != "" {
		b.flagVal = new(string)
		help := usage
		if envName != "" {
			help += " (env " + envName + ")"
		}
		// The flag's own default is only shown by the usage: Load tells a flag given from
		// one left alone by Visit, not by its value.
		shown := def
		if secret {
			shown = ""
		}
		l.fs.StringVar(b.flagVal, flagName, shown, help)
	}
	l.bindings = append(l.bindings, b)
}

// String binds a string setting.
func (l *Loader) String(dst *string, flagName, envName, def, usage string) {
	l.bind(flagName, envName, def, usage, false, func(v string) error { *dst = v; return nil })
}

// Secret binds a secret setting; its value never appears in errors or help output.
func (l *Loader) Secret(dst *Secret, flagName, envName, usage string) {
	l.bind(flagName, envName, "", usage, true, func(v string) error { *dst = NewSecret(v); return nil })
}

// Int binds an integer setting.
func (l *Loader) Int(dst *int, flagName, envName string, def int, usage string) {
	l.bind(flagName, envName, strconv.Itoa(def), usage, false, func(v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return errors.New("not an integer")
		}
		*dst = n
		return nil
	})
}

// Bool binds a boolean setting.
func (l *Loader) Bool(dst *bool, flagName, envName string, def bool, usage string) {
	l.bind(flagName, envName, strconv.FormatBool(def), usage, false, func(v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return errors.New("not a boolean (true or false)")
		}
		*dst = b
		return nil
	})
}

// Duration binds a duration setting, written as Go durations are ("500ms", "15m").
func (l *Loader) Duration(dst *time.Duration, flagName, envName string, def time.Duration, usage string) {
	l.bind(flagName, envName, def.String(), usage, false, func(v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return errors.New("not a duration (for example 500ms or 15m)")
		}
		*dst = d
		return nil
	})
}

// Func binds a setting with its own parser.
func (l *Loader) Func(flagName, envName, def, usage string, parse func(string) error) {
	l.bind(flagName, envName, def, usage, false, parse)
}

// Check records a validation problem when ok is false. Call it after Load, naming the setting.
func (l *Loader) Check(ok bool, setting, format string, args ...any) {
	if !ok {
		l.problems = append(l.problems, setting+": "+fmt.Sprintf(format, args...))
	}
}

// Load parses flags and environment into every bound destination. It returns an error that
// lists every problem found, each prefixed by the setting's name.
//
// Asked for help (-h, -help or --help), Load writes the usage and ends the program with status
// 0, as the flag package does for a program that exits on errors: help is what was asked for,
// not a mistake. Where the exit returns (WithHelpExit), Load returns flag.ErrHelp.
func (l *Loader) Load() error {
	if err := l.fs.Parse(l.args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			l.Usage(l.helpOut)
			l.exit(0)
			return err
		}
		var usage strings.Builder
		l.Usage(&usage)
		l.problems = append(l.problems, err.Error()+"\nusage:\n"+usage.String())
		return l.Err()
	}
	l.fs.Visit(func(f *flag.Flag) {
		for _, b := range l.bindings {
			if b.flagName == f.Name {
				b.flagSet = true
			}
		}
	})
	for _, b := range l.bindings {
		v, source := b.def, "default"
		if b.envName != "" {
			if ev, ok := l.lookup(b.envName); ok && ev != "" {
				v, source = ev, b.envName
			}
		}
		if b.flagSet {
			v, source = *b.flagVal, "-"+b.flagName
		}
		if err := b.set(v); err != nil {
			shown := strconv.Quote(v)
			if b.secret {
				shown = "[redacted]"
			}
			l.problems = append(l.problems, fmt.Sprintf("%s: %s (from %s, value %s)", b.name(), err, source, shown))
		}
	}
	return l.Err()
}

// Err returns the problems recorded so far by Load and Check, or nil.
func (l *Loader) Err() error {
	if len(l.problems) == 0 {
		return nil
	}
	return errors.New("config: " + strings.Join(l.problems, "; "))
}

func (b *binding) name() string {
	switch {
	case b.envName != "" && b.flagName != "":
		return b.envName + " (-" + b.flagName + ")"
	case b.envName != "":
		return b.envName
	default:
		return "-" + b.flagName
	}
}

// Usage writes the program's summary, if it has one, and the help text of every bound flag.
func (l *Loader) Usage(w io.Writer) {
	if l.summary != "" {
		fmt.Fprintf(w, "%s\n\n", l.summary)
	}
	fmt.Fprintf(w, "Usage: %s [flags]\n", l.name)
	fmt.Fprintln(w, "A flag wins over its environment variable, which wins over the default.")
	fmt.Fprintln(w)
	l.fs.SetOutput(w)
	l.fs.PrintDefaults()
	l.fs.SetOutput(io.Discard)
}

// ParseEndpoints parses "name=url,url;name2=url" into a map of service name to base URLs.
// The static resolver of the embedded default is configured this way.
func ParseEndpoints(s string) (map[string][]string, error) {
	out := map[string][]string{}
	s = strings.TrimSpace(s)
	if s == "" {
		return out, nil
	}
	for _, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, urls, ok := strings.Cut(entry, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("entry %q is not name=url[,url...]", entry)
		}
		for _, raw := range strings.Split(urls, ",") {
			raw = strings.TrimSpace(raw)
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, fmt.Errorf("service %q: %q is not an http(s) URL", name, raw)
			}
			out[name] = append(out[name], strings.TrimSuffix(raw, "/"))
		}
	}
	return out, nil
}

// FormatEndpoints is the inverse of ParseEndpoints, with names in sorted order.
func FormatEndpoints(m map[string][]string) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, n+"="+strings.Join(m[n], ","))
	}
	return strings.Join(parts, ";")
}
