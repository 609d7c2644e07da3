package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/openengage/engage/pipeline/tagplan"
)

func runTagplan(_ context.Context, args []string, stdout io.Writer) error {
	if len(args) < 2 || args[0] != "check" {
		return errors.New("usage: engage tagplan check FILE...")
	}
	failed := 0
	for _, file := range args[1:] {
		plan, err := tagplan.ParseFile(file)
		if err != nil {
			failed++
			fmt.Fprintln(os.Stderr, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: ok: %s\n", file, plan.Summary())
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d tag plans have mistakes", failed, len(args)-1)
	}
	return nil
}
