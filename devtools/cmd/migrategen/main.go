// Command migrategen writes a service's next versioned migration from its Ent schema:
//
//	go tool task migrate:diff -- <service> <name>
//
// It applies the committed migrations of services/<service>/migrations to a scratch PostgreSQL
// database and a scratch SQLite file, asks Ent what would still change, and writes that as
// <UTC timestamp>_<name>.sql in the dialect's folder. It writes nothing when the migrations
// already match the schema. The scratch databases are dropped afterwards.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/basaltplatform/basalt/devtools/internal/migrategen"
	"github.com/basaltplatform/basalt/kernel/config"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: migrategen [-postgres URL] <service> <name>")
	}
	// The service and the name come last, after any flags.
	flags, rest := args[:len(args)-2], args[len(args)-2:]
	var adminURL string
	l := config.NewLoader("migrategen", flags, os.LookupEnv)
	l.String(&adminURL, "postgres", "BASALT_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server for the scratch database (its user must create databases)")
	if err := l.Load(); err != nil {
		return err
	}
	svc, err := migrategen.Lookup(rest[0])
	if err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	written, err := migrategen.New(root, adminURL).Generate(ctx, svc, rest[1])
	if err != nil {
		return err
	}
	if len(written) == 0 {
		fmt.Printf("%s: the migrations match the Ent schema; nothing written\n", svc.Name)
	}
	for _, path := range written {
		fmt.Println("wrote", path)
	}
	return nil
}

// repoRoot returns the nearest folder above the working directory that holds go.work.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.work above %s: run migrategen inside the repository", dir)
		}
		dir = parent
	}
}
