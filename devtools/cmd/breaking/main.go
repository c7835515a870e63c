// Command breaking fails when the contracts in proto/ change in a breaking way compared with
// the previous commit of main (or the merge base with origin/main on a branch).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/basaltplatform/basalt/devtools/internal/breaking"
	"github.com/basaltplatform/basalt/kernel/config"
)

func main() {
	var o breaking.Options
	l := config.NewLoader("breaking", os.Args[1:], os.LookupEnv)
	l.String(&o.Against, "against", "BASALT_BREAKING_AGAINST", "", "git revision to compare with (default: merge base with origin/main, or HEAD~1)")
	l.String(&o.Root, "root", "", ".", "git checkout to check")
	if err := l.Load(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	o.Out = os.Stdout
	o.Buf = func(ctx context.Context, args ...string) ([]byte, error) {
		return exec.CommandContext(ctx, "go", append([]string{"tool", "buf"}, args...)...).CombinedOutput()
	}
	if err := breaking.Check(context.Background(), o); err != nil {
		if !errors.Is(err, breaking.ErrBreaking) {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1)
	}
}
