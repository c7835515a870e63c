// Command render prints what kustomize builds from a folder of deploy/k8s, the YAML that
// `kubectl apply -k` would send, for machines without kubectl or kustomize:
//
//	go run ./deploy/validate/cmd/render deploy/k8s/overlays/dev
//
// It uses the kustomize version deploy/validate pins, so what it prints is what the tests check.
package main

import (
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run builds the folder args names and writes the result to stdout; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: render <kustomization folder>, for example deploy/k8s/overlays/dev")
		return 2
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), args[0])
	if err != nil {
		fmt.Fprintf(stderr, "render %s: %v\n", args[0], err)
		return 1
	}
	out, err := res.AsYaml()
	if err != nil {
		fmt.Fprintf(stderr, "render %s: %v\n", args[0], err)
		return 1
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "render: %v\n", err)
		return 1
	}
	return 0
}
