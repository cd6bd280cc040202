// dockerfile-check parses a Dockerfile with BuildKit's own frontend (the parser and the
// instruction decoder `docker build` uses) and runs BuildKit's build checks (the linter behind
// `docker build --check`), so a syntax error or a flagged pattern fails without a Docker engine.
//
//	dockerfile-check helm/docker/Dockerfile
package main

import (
	"bytes"
	"fmt"
	"os"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: dockerfile-check DOCKERFILE")
		os.Exit(2)
	}
	src, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: parse error: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	for _, w := range res.Warnings {
		fmt.Printf("%s:%d: parser warning: %s\n", os.Args[1], w.Location.Start.Line, w.Short)
	}
	problems := 0
	lint := linter.New(&linter.Config{
		Warn: func(rule, description, url, msg string, location []parser.Range) {
			line := 0
			if len(location) > 0 {
				line = location[0].Start.Line
			}
			fmt.Printf("%s:%d: %s: %s\n", os.Args[1], line, rule, msg)
			problems++
		},
	})
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	names := []string{}
	for _, s := range stages {
		names = append(names, s.Name)
	}
	fmt.Printf("%s: %d stages %v, %d global ARGs, %d problems\n", os.Args[1], len(stages), names, len(metaArgs), problems)
	if problems > 0 || len(res.Warnings) > 0 {
		os.Exit(1)
	}
}
