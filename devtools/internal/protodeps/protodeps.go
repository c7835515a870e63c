// Package protodeps exports the third-party .proto files the contracts import (google/api
// annotations) from a pinned Go module in the local module cache into a git-ignored folder.
//
// Protodeps exists because the Buf Schema Registry is out of reach: buf cannot fetch deps, so
// the files come from a Go module whose version and content hash are pinned here and checked
// by the go command against the checksum database, and they are never copied into the repo.
package protodeps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Source is a Go module that carries .proto files.
type Source struct {
	// Module is the module path.
	Module string
	// Version is the exact module version.
	Version string
	// Sum is the module's h1 hash as go.sum records it; the export fails on any other content.
	Sum string
	// Root is the folder inside the module that import paths are relative to.
	Root string
	// Files are the import paths to export.
	Files []string
}

// Pinned is the single place where third-party proto sources are pinned. The google/api files
// of grpc-gateway v1.16.0 are the upstream googleapis files; they have been stable for years.
var Pinned = []Source{{
	Module:  "github.com/grpc-ecosystem/grpc-gateway",
	Version: "v1.16.0",
	Sum:     "h1:gmcG1KaJ57LophUzW0Hy8NmPhnMZb4M0+kPpLofRdBo=",
	Root:    "third_party/googleapis",
	Files: []string{
		"google/api/annotations.proto",
		"google/api/http.proto",
		"google/api/httpbody.proto",
	},
}}

// Dir is the folder, relative to the repository root, where buf.yaml expects the export. Its
// name says what fills it because buf names a module's folder when it finds no .proto files
// there: in a fresh clone, `go tool buf lint` fails with the one line
// Module "path: ".build/proto-deps (go tool task proto-deps)"" had no .proto files.
const Dir = ".build/proto-deps (go tool task proto-deps)"

// StampFile is written last into the output folder; its content names every pinned source, so
// a task can tell an up-to-date export from a stale or half-written one.
const StampFile = ".stamp"

// Stamp returns the content of the stamp file for the given sources.
func Stamp(sources []Source) string {
	var b strings.Builder
	for _, s := range sources {
		fmt.Fprintf(&b, "%s@%s %s\n", s.Module, s.Version, s.Sum)
	}
	return b.String()
}

// Export downloads each source into the module cache (verified against its pinned sum) and
// copies its files into outDir, replacing what was there.
func Export(ctx context.Context, sources []Source, outDir string) error {
	if err := os.RemoveAll(outDir); err != nil {
		return err
	}
	for _, s := range sources {
		dir, err := download(ctx, s)
		if err != nil {
			return err
		}
		for _, f := range s.Files {
			if err := copyFile(filepath.Join(dir, s.Root, filepath.FromSlash(f)), filepath.Join(outDir, filepath.FromSlash(f))); err != nil {
				return fmt.Errorf("protodeps: %s@%s: %w", s.Module, s.Version, err)
			}
		}
	}
	return os.WriteFile(filepath.Join(outDir, StampFile), []byte(Stamp(sources)), 0o644)
}

// Fresh reports whether outDir holds a complete export of sources.
func Fresh(sources []Source, outDir string) bool {
	b, err := os.ReadFile(filepath.Join(outDir, StampFile))
	return err == nil && string(b) == Stamp(sources)
}

func download(ctx context.Context, s Source) (string, error) {
	// The download runs outside any module so that the workspace's own requirements cannot
	// change what is fetched; the go command verifies the module against the checksum database.
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", s.Module+"@"+s.Version)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct {
		Dir   string
		Sum   string
		Error string
	}
	if jerr := json.Unmarshal(out, &info); jerr != nil && err == nil {
		err = jerr
	}
	if info.Error != "" {
		return "", fmt.Errorf("protodeps: go mod download %s@%s: %s", s.Module, s.Version, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("protodeps: go mod download %s@%s: %w: %s", s.Module, s.Version, err, stderr.String())
	}
	if info.Sum != s.Sum {
		return "", fmt.Errorf("protodeps: %s@%s has sum %s, pinned %s", s.Module, s.Version, info.Sum, s.Sum)
	}
	if info.Dir == "" {
		return "", errors.New("protodeps: go mod download reported no directory")
	}
	return info.Dir, nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	// The module cache is read-only; the copy must be writable so that a later export can
	// replace it.
	return os.WriteFile(to, b, 0o644)
}
