// Command protodeps exports the pinned third-party .proto files into a git-ignored folder,
// where buf.yaml expects them. It does nothing when the export is already complete.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/basaltplatform/basalt/devtools/internal/protodeps"
)

func main() {
	out := flag.String("out", protodeps.Dir, "folder to export into")
	force := flag.Bool("force", false, "export even when the folder is up to date")
	flag.Parse()
	if !*force && protodeps.Fresh(protodeps.Pinned, *out) {
		return
	}
	if err := protodeps.Export(context.Background(), protodeps.Pinned, *out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
