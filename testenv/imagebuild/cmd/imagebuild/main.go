// Command imagebuild builds, inspects and unpacks the project's container images without a
// container daemon or registry (see deploy/README.md and `make images`).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"liqo-wasm/testenv/imagebuild/image"
)

const usage = `imagebuild: container images without a daemon (docker-archive files)

Usage:
  imagebuild build --out FILE --tag NAME:TAG --file SRC:DEST[:MODE]... [--libs]
                   --entrypoint PATH [--cmd ARG]... [--env K=V]... [--user UID:GID]
                   [--expose PORT]... [--label K=V]... [--created UNIX_SECONDS]
  imagebuild inspect FILE       print the tags, id, config and files as JSON
  imagebuild extract FILE DIR   unpack the image's files into DIR

The archives load with "docker load -i FILE", "kind load image-archive FILE" and
"ctr -n k8s.io images import FILE".
`

// multi is a flag that may be repeated.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = build(os.Args[2:])
	case "inspect":
		err = inspect(os.Args[2:])
	case "extract":
		if len(os.Args) != 4 {
			err = fmt.Errorf("extract takes FILE DIR")
		} else {
			err = image.Extract(os.Args[2], os.Args[3])
		}
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		err = fmt.Errorf("unknown command %q (build, inspect, extract)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func build(args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	out := fs.String("out", "", "the docker-archive to write")
	tag := fs.String("tag", "", "the image's tag, NAME:TAG")
	libs := fs.Bool("libs", false, "add the program interpreter and shared libraries of dynamically linked files")
	entrypoint := fs.String("entrypoint", "", "the program to run")
	user := fs.String("user", fmt.Sprintf("%d:%d", image.NonRootUID, image.NonRootUID), "the user to run as")
	created := fs.Int64("created", 0, "creation time, seconds since the epoch (fixed for reproducible builds)")
	var files, cmd, env, expose, labels multi
	fs.Var(&files, "file", "SRC:DEST[:MODE] to copy (repeat)")
	fs.Var(&cmd, "cmd", "a default argument (repeat)")
	fs.Var(&env, "env", "K=V in the environment (repeat)")
	fs.Var(&expose, "expose", "a port the program listens on (repeat)")
	fs.Var(&labels, "label", "K=V image label (repeat)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *tag == "" || *entrypoint == "" || len(files) == 0 {
		return fmt.Errorf("build needs --out, --tag, --entrypoint and at least one --file")
	}
	spec := image.Spec{
		WithLibs:     *libs,
		Entrypoint:   []string{*entrypoint},
		Cmd:          cmd,
		Env:          env,
		User:         *user,
		ExposedPorts: expose,
		Labels:       map[string]string{},
		Created:      time.Unix(*created, 0),
		WorkingDir:   "/",
	}
	for _, f := range files {
		parts := strings.Split(f, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return fmt.Errorf("--file %q is not SRC:DEST[:MODE]", f)
		}
		mode := int64(0o755)
		if len(parts) == 3 {
			m, err := strconv.ParseInt(parts[2], 8, 32)
			if err != nil {
				return fmt.Errorf("--file %q: mode %q is not octal", f, parts[2])
			}
			mode = m
		}
		spec.Files = append(spec.Files, image.File{Src: parts[0], Dest: parts[1], Mode: mode})
	}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("--label %q is not K=V", l)
		}
		spec.Labels[k] = v
	}
	img, err := image.Build(spec)
	if err != nil {
		return err
	}
	if err := image.Write(*out, *tag, img); err != nil {
		return err
	}
	id, err := img.ConfigName()
	if err != nil {
		return err
	}
	fmt.Printf("%s  %s  %s\n", *out, *tag, id)
	return nil
}

func inspect(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("inspect takes one FILE")
	}
	s, err := image.Inspect(args[0])
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}
