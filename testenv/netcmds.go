package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"liqo-wasm/testenv/internal/cluster"
	"liqo-wasm/testenv/internal/netns"
	"liqo-wasm/testenv/internal/state"
)

// networkCluster loads DIR's state and returns the named cluster's network
// namespace, failing clearly outside network mode.
func networkCluster(cmd, dir, name string) (string, error) {
	if dir == "" || name == "" {
		return "", usageErrorf("%s: --dir and --cluster are required (see testenv %s --help)", cmd, cmd)
	}
	st, err := state.Load(dir)
	if err != nil {
		return "", err
	}
	c, err := st.Cluster(name)
	if err != nil {
		return "", err
	}
	if c.Netns == "" {
		return "", fmt.Errorf("%s: the environment in %s is not in network mode (testenv up --network)", cmd, st.Dir)
	}
	if !netns.Exists(c.Netns) {
		return "", fmt.Errorf("%s: network namespace %s of cluster %s does not exist (was the environment torn down?)", cmd, c.Netns, name)
	}
	return c.Netns, nil
}

// ---- exec ------------------------------------------------------------------

func cmdExec(args []string) error {
	fs := newFlags("exec", "--dir DIR --cluster NAME -- COMMAND [ARGS...]",
		`Network mode: runs COMMAND inside the cluster's network namespace (the
"node": it reaches ClusterIPs through kube-proxy, pod IPs, the WAN, and the
API server at the kubeconfig's address), with this process's environment.
The exit status is COMMAND's.`)
	dir := fs.String("dir", "", "environment `directory`")
	name := fs.String("cluster", "", "cluster `name`")
	if err := fs.Parse(args); err != nil {
		return parseFlags(fs, args) // formats the error (or prints --help)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageErrorf("exec: no command given (testenv exec --dir DIR --cluster NAME -- COMMAND ARGS...)")
	}
	absDir, err := requireDir(fs, *dir)
	if err != nil {
		return err
	}
	ns, err := networkCluster("exec", absDir, *name)
	if err != nil {
		return err
	}
	path, err := exec.LookPath(rest[0])
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	f, err := os.Open(netns.RunDir + "/" + ns)
	if err != nil {
		return err
	}
	// execve keeps the namespaces of the calling thread: enter the
	// namespace on this (locked) thread and replace the process.
	runtime.LockOSThread()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("exec: entering network namespace %s: %w", ns, err)
	}
	return fmt.Errorf("exec %s: %w", path, syscall.Exec(path, rest, os.Environ()))
}

// ---- http-get --------------------------------------------------------------

func cmdHTTPGet(args []string) error {
	fs := newFlags("http-get", "--dir DIR --cluster NAME URL",
		`Network mode: sends GET URL from inside the cluster's network namespace and
prints the response body. Exits 1 if the request fails or the status is not
2xx (the status and body go to stderr then). For tests and the demo, where
curl may be missing.`)
	dir := fs.String("dir", "", "environment `directory`")
	name := fs.String("cluster", "", "cluster `name`")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return parseFlags(fs, args)
	}
	if fs.NArg() != 1 {
		return usageErrorf("http-get: wants exactly one URL (see testenv http-get --help)")
	}
	absDir, err := requireDir(fs, *dir)
	if err != nil {
		return err
	}
	ns, err := networkCluster("http-get", absDir, *name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	status, body, err := cluster.HTTPGet(ctx, ns, fs.Arg(0))
	if err != nil {
		return fmt.Errorf("http-get %s from %s: %w", fs.Arg(0), ns, err)
	}
	if status < 200 || status > 299 {
		return fmt.Errorf("http-get %s from %s: status %d: %s", fs.Arg(0), ns, status, body)
	}
	_, err = os.Stdout.Write(body)
	return err
}
