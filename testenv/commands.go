package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"liqo-wasm/testenv/internal/cluster"
	"liqo-wasm/testenv/internal/netns"
	"liqo-wasm/testenv/internal/pki"
	"liqo-wasm/testenv/internal/proc"
	"liqo-wasm/testenv/internal/state"
)

const (
	maxClusters = 16
	stopGrace   = 15 * time.Second
)

// newFlags returns a flag set for one command whose --help prints synopsis
// and the flags.
func newFlags(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Printf("Usage: testenv %s %s\n\n%s\n\nFlags:\n", name, synopsis, about)
		fs.SetOutput(os.Stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return errHelp
		}
		return usageErrorf("%s: %v (see testenv %s --help)", fs.Name(), err, fs.Name())
	}
	if fs.NArg() > 0 {
		return usageErrorf("%s: unexpected argument %q (see testenv %s --help)", fs.Name(), fs.Arg(0), fs.Name())
	}
	return nil
}

func requireDir(fs *flag.FlagSet, dir string) (string, error) {
	if dir == "" {
		return "", usageErrorf("%s: --dir is required (see testenv %s --help)", fs.Name(), fs.Name())
	}
	return filepath.Abs(dir)
}

// ---- up -------------------------------------------------------------------

func cmdUp(args []string) error {
	fs := newFlags("up", "--dir DIR [--clusters london,newyork] [flags]",
		`Starts the clusters in the background, waits until every one is ready and
prints their URLs and export lines for their kubeconfigs (eval-able).`)
	dir := fs.String("dir", "", "environment `directory` (created if missing; must not hold a running environment)")
	names := fs.String("clusters", "london,newyork", "comma-separated cluster `names` (DNS labels)")
	podCIDRs := fs.String("pod-cidr", "", "per-cluster pod CIDRs, `NAME=CIDR,...` (default 10.(200+i).0.0/16 for the i-th cluster)")
	svcCIDRs := fs.String("service-cidr", "", "per-cluster Service CIDRs, `NAME=CIDR,...` (default 10.(96+i).0.0/16 for the i-th cluster)")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the clusters to become ready")
	owner := fs.Int("owner-pid", 0, "if set, the clusters stop and delete their data when this `pid` exits (for test harnesses)")
	network := fs.Bool("network", false, "network mode (root only): a network namespace per cluster linked by a WAN, a real kube-proxy in each, pods run as processes (see README.md)")
	podBinaries := fs.String("pod-binaries", "", "network mode: `directory` of executables; a pod whose first container's command[0] names one runs it as a process with the pod's IP")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *podBinaries != "" && !*network {
		return usageErrorf("up: --pod-binaries needs --network")
	}
	absDir, err := requireDir(fs, *dir)
	if err != nil {
		return err
	}
	clusterNames, err := parseNames(*names)
	if err != nil {
		return err
	}
	pods, err := parseCIDRMap("--pod-cidr", *podCIDRs, clusterNames)
	if err != nil {
		return err
	}
	services, err := parseCIDRMap("--service-cidr", *svcCIDRs, clusterNames)
	if err != nil {
		return err
	}
	if *owner < 0 || (*owner > 0 && !proc.Alive(*owner)) {
		return usageErrorf("up: --owner-pid %d is not a running process", *owner)
	}
	var binDir string
	if *network {
		if err := netns.CheckSupported(); err != nil {
			return fmt.Errorf("up --network: %w", err)
		}
		for _, n := range clusterNames {
			if n == "wan" {
				return usageErrorf("up: in network mode no cluster may be named \"wan\" (the WAN namespace has that name)")
			}
		}
		if *podBinaries != "" {
			if binDir, err = filepath.Abs(*podBinaries); err != nil {
				return err
			}
			if info, err := os.Stat(binDir); err != nil || !info.IsDir() {
				return usageErrorf("up: --pod-binaries %s is not a directory", *podBinaries)
			}
		}
	}

	if err := os.MkdirAll(absDir, 0o755); err != nil {
		return err
	}
	unlock, err := state.Lock(absDir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := ensureUnused(absDir); err != nil {
		return err
	}

	ports, err := freePorts(4 * len(clusterNames))
	if err != nil {
		return fmt.Errorf("finding free ports: %w", err)
	}
	st := &state.State{Version: 1, Dir: absDir, OwnerPID: *owner}
	if *network {
		prefix := netns.Prefix(absDir)
		st.Network = &state.Network{
			Prefix:       prefix,
			WANNamespace: netns.WANNamespace(prefix),
			WANCIDR:      netns.WANCIDR,
			PodBinaries:  binDir,
		}
	}
	for i, name := range clusterNames {
		podCIDR := pods[name]
		if podCIDR == "" {
			podCIDR = fmt.Sprintf("10.%d.0.0/16", 200+i)
		}
		svcCIDR := services[name]
		if svcCIDR == "" {
			svcCIDR = fmt.Sprintf("10.%d.0.0/16", 96+i)
		}
		p := state.Ports{APIServer: ports[4*i], EtcdClient: ports[4*i+1], EtcdPeer: ports[4*i+2], ControllerManager: ports[4*i+3]}
		st.Clusters = append(st.Clusters, &state.Cluster{
			Name:         name,
			APIServerURL: "https://127.0.0.1:" + strconv.Itoa(p.APIServer),
			Kubeconfig:   filepath.Join(absDir, name+".kubeconfig"),
			PodCIDR:      podCIDR,
			ServiceCIDR:  svcCIDR,
			NodeName:     name + "-node",
			DataDir:      filepath.Join(absDir, name),
			LogFile:      filepath.Join(absDir, name, "cluster.log"),
			Ports:        p,
		})
		if st.Network != nil {
			c := st.Clusters[len(st.Clusters)-1]
			c.Netns = netns.ClusterNamespace(st.Network.Prefix, name)
			c.WANAddress = netns.WANAddress(i)
		}
	}

	started := time.Now()
	ok := false
	defer func() {
		if !ok {
			cleanupFailedUp(st)
		}
	}()
	for _, c := range st.Clusters {
		removeClusterData(c)
		if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
			return err
		}
		_ = os.Remove(c.LogFile) // a log left by an earlier failed up
		if err := pki.Generate(c.PKIDir(), c.Name); err != nil {
			return fmt.Errorf("cluster %s: generating certificates: %w", c.Name, err)
		}
		if err := cluster.WriteKubeconfigs(c); err != nil {
			return fmt.Errorf("cluster %s: writing kubeconfigs: %w", c.Name, err)
		}
	}
	if st.Network != nil {
		// Namespaces left by a run of this directory that crashed.
		if err := netns.Teardown(st.Network.Prefix); err != nil {
			return fmt.Errorf("removing stale network namespaces: %w", err)
		}
		var links []netns.ClusterLink
		for _, c := range st.Clusters {
			links = append(links, netns.ClusterLink{Namespace: c.Netns, WANAddress: c.WANAddress, PodCIDR: c.PodCIDR, ServiceCIDR: c.ServiceCIDR})
		}
		if err := netns.Setup(st.Network.Prefix, links); err != nil {
			return fmt.Errorf("network mode: %w", err)
		}
	}
	if err := st.Save(); err != nil {
		return err
	}

	ctx, cancel := signalContext(*timeout)
	defer cancel()
	if err := startClusters(ctx, st, st.Clusters); err != nil {
		return err
	}
	ok = true

	elapsed := time.Since(started).Round(100 * time.Millisecond)
	for _, c := range st.Clusters {
		fmt.Printf("# %-10s %s  pods %s  services %s  kubeconfig %s\n",
			c.Name, c.APIServerURL, c.PodCIDR, c.ServiceCIDR, c.Kubeconfig)
		if c.Netns != "" {
			fmt.Printf("# %-10s netns %s  wan %s\n", "", c.Netns, c.WANAddress)
		}
	}
	fmt.Printf("# ready in %s; state in %s; logs in %s/NAME/cluster.log; stop with: testenv down --dir %s\n",
		elapsed, state.Path(absDir), absDir, absDir)
	for _, c := range st.Clusters {
		fmt.Printf("export %s=%s\n", state.EnvVarName(c.Name), c.Kubeconfig)
	}
	return nil
}

func parseNames(list string) ([]string, error) {
	var names []string
	seen := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			return nil, usageErrorf("up: bad cluster name %q: %s", n, strings.Join(errs, "; "))
		}
		if len(n) > 40 {
			return nil, usageErrorf("up: cluster name %q is longer than 40 characters", n)
		}
		if seen[n] {
			return nil, usageErrorf("up: cluster %q listed twice in --clusters", n)
		}
		seen[n] = true
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil, usageErrorf("up: --clusters needs at least one name")
	}
	if len(names) > maxClusters {
		return nil, usageErrorf("up: at most %d clusters, got %d", maxClusters, len(names))
	}
	return names, nil
}

func parseCIDRMap(flagName, list string, names []string) (map[string]string, error) {
	known := map[string]bool{}
	for _, n := range names {
		known[n] = true
	}
	out := map[string]string{}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, cidr, found := strings.Cut(item, "=")
		if !found {
			return nil, usageErrorf("up: %s wants NAME=CIDR, got %q", flagName, item)
		}
		if !known[name] {
			return nil, usageErrorf("up: %s names cluster %q, which is not in --clusters", flagName, name)
		}
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			return nil, usageErrorf("up: %s for %s: %v", flagName, name, err)
		}
		if n.String() != cidr {
			return nil, usageErrorf("up: %s for %s: %s is not a network address (did you mean %s?)", flagName, name, cidr, n)
		}
		ones, bits := n.Mask.Size()
		if flagName == "--service-cidr" && bits == 32 && ones < 12 {
			return nil, usageErrorf("up: --service-cidr for %s: %s is larger than a /12, which kube-apiserver refuses", name, cidr)
		}
		if bits-ones < 4 {
			return nil, usageErrorf("up: %s for %s: %s is too small", flagName, name, cidr)
		}
		out[name] = cidr
	}
	return out, nil
}

// ensureUnused fails if DIR already holds an environment.
func ensureUnused(dir string) error {
	st, err := state.Load(dir)
	if errors.Is(err, state.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var running, stopped []string
	for _, c := range st.Clusters {
		if proc.IsServing(c.PID, dir, c.Name) {
			running = append(running, fmt.Sprintf("%s (pid %d)", c.Name, c.PID))
		} else {
			stopped = append(stopped, c.Name)
		}
	}
	if len(running) > 0 {
		return fmt.Errorf("%s is already in use by running clusters: %s; run `testenv down --dir %s` first",
			dir, strings.Join(running, ", "), dir)
	}
	return fmt.Errorf("%s already holds a stopped environment (%s); use `testenv start --dir %s --cluster NAME` or `testenv down --dir %s`",
		dir, strings.Join(stopped, ", "), dir, dir)
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// checkPortsFree fails with a clear message if a port of c is taken.
func checkPortsFree(c *state.Cluster) error {
	all := c.Ports.All()
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, what := range keys {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(all[what]))
		if err != nil {
			return fmt.Errorf("cluster %s: port %d (%s) is already in use", c.Name, all[what], what)
		}
		_ = l.Close()
	}
	return nil
}

// signalContext is cancelled after timeout or on SIGINT/SIGTERM.
func signalContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	return ctx, func() { stop(); cancel() }
}

// startClusters spawns the clusters and waits until all are ready. On
// failure it stops every cluster it started and returns the first error.
func startClusters(ctx context.Context, st *state.State, clusters []*state.Cluster) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	for _, c := range clusters {
		if err := checkPortsFree(c); err != nil {
			return err
		}
	}
	type started struct {
		c      *state.Cluster
		exited <-chan error
	}
	var procs []started
	fail := func(err error) error {
		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = proc.Stop(p.c.PID, st.Dir, p.c.Name, stopGrace)
				_ = os.Remove(state.PIDFile(st.Dir, p.c.Name))
				p.c.PID = 0
			}()
		}
		wg.Wait()
		_ = st.Save()
		return err
	}
	for _, c := range clusters {
		pid, exited, err := proc.Spawn(exe, st.Dir, c.Name, c.LogFile)
		if err != nil {
			return fail(fmt.Errorf("cluster %s: starting process: %w", c.Name, err))
		}
		c.PID = pid
		procs = append(procs, started{c, exited})
		if err := os.WriteFile(state.PIDFile(st.Dir, c.Name), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
			return fail(err)
		}
	}
	if err := st.Save(); err != nil {
		return fail(err)
	}

	errs := make(chan error, len(procs))
	for _, p := range procs {
		go func() { errs <- waitReady(ctx, p.c, p.exited) }()
	}
	var first error
	for range procs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return fail(first)
	}
	return nil
}

// waitReady polls cluster.Check until it passes, the process exits or ctx
// ends.
func waitReady(ctx context.Context, c *state.Cluster, exited <-chan error) error {
	var last error
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("cluster %s failed to start: its process %v%s", c.Name, err, logTail(c.LogFile))
		default:
		}
		checkCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = cluster.Check(checkCtx, c)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			why := "was not ready in time"
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				why = "start was interrupted"
			}
			return fmt.Errorf("cluster %s %s (last check: %v)%s", c.Name, why, last, logTail(c.LogFile))
		case err := <-exited:
			return fmt.Errorf("cluster %s failed to start: its process %v%s", c.Name, err, logTail(c.LogFile))
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// logTail returns the last lines of a log file, indented, for error output.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	for i, l := range lines {
		if len(l) > 300 {
			l = l[:300] + "..."
		}
		lines[i] = "  | " + l
	}
	return "\nlast lines of " + path + ":\n" + strings.Join(lines, "\n")
}

// removeClusterData deletes what up creates for a cluster, except its logs.
func removeClusterData(c *state.Cluster) {
	for _, sub := range []string{"etcd", "pki", "apiserver-certs", "controller-manager.kubeconfig", "kubelet.kubeconfig"} {
		_ = os.RemoveAll(filepath.Join(c.DataDir, sub))
	}
	_ = os.Remove(c.Kubeconfig)
}

// cleanupFailedUp removes what a failed up created, keeping the logs so the
// failure can be read.
func cleanupFailedUp(st *state.State) {
	for _, c := range st.Clusters {
		if c.PID > 0 {
			_ = proc.Stop(c.PID, st.Dir, c.Name, stopGrace)
		}
		_ = os.Remove(state.PIDFile(st.Dir, c.Name))
		removeClusterData(c)
	}
	if st.Network != nil {
		_ = netns.Teardown(st.Network.Prefix)
	}
	_ = os.Remove(state.Path(st.Dir))
	if ownerGone(st) {
		removeEnvironment(st) // no one will read the logs
	}
}

// ownerGone reports whether the environment has an owner process that exited.
func ownerGone(st *state.State) bool {
	return st.OwnerPID > 0 && !proc.Alive(st.OwnerPID)
}

// removeEnvironment deletes everything up created in the environment
// directory, and the directory itself if nothing else is left in it.
func removeEnvironment(st *state.State) {
	for _, c := range st.Clusters {
		_ = os.RemoveAll(c.DataDir)
		_ = os.Remove(c.Kubeconfig)
		_ = os.Remove(state.PIDFile(st.Dir, c.Name))
	}
	_ = os.Remove(state.Path(st.Dir))
	_ = os.Remove(state.Path(st.Dir) + ".tmp")
	_ = os.Remove(filepath.Join(st.Dir, ".lock"))
	_ = os.Remove(st.Dir) // only if now empty
}

// ---- down -----------------------------------------------------------------

func cmdDown(args []string) error {
	fs := newFlags("down", "--dir DIR",
		`Stops every cluster of DIR (SIGTERM, then SIGKILL after 15s) and deletes
what up created there: data, certificates, kubeconfigs, logs and state.json.
Succeeds when DIR holds no environment.`)
	dir := fs.String("dir", "", "environment `directory`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	absDir, err := requireDir(fs, *dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(absDir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	unlock, err := state.Lock(absDir)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := state.Load(absDir)
	if errors.Is(err, state.ErrNotFound) {
		return netns.Teardown(netns.Prefix(absDir))
	}
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(st.Clusters))
	for i, c := range st.Clusters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = proc.Stop(c.PID, absDir, c.Name, stopGrace)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Always, not only in network mode: namespaces of this directory may be
	// left by an up that crashed before it wrote state.json.
	if err := netns.Teardown(netns.Prefix(absDir)); err != nil {
		return fmt.Errorf("removing network namespaces: %w", err)
	}
	removeEnvironment(st)
	return nil
}

// ---- stop / start ---------------------------------------------------------

func loadCluster(fs *flag.FlagSet, dir, name string) (*state.State, *state.Cluster, func(), error) {
	absDir, err := requireDir(fs, dir)
	if err != nil {
		return nil, nil, nil, err
	}
	if name == "" {
		return nil, nil, nil, usageErrorf("%s: --cluster is required (see testenv %s --help)", fs.Name(), fs.Name())
	}
	if _, err := os.Stat(state.Path(absDir)); err != nil {
		return nil, nil, nil, fmt.Errorf("no test environment in %s (run `testenv up --dir %s` first)", absDir, absDir)
	}
	unlock, err := state.Lock(absDir)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := state.Load(absDir)
	if err != nil {
		unlock()
		return nil, nil, nil, err
	}
	c, err := st.Cluster(name)
	if err != nil {
		unlock()
		return nil, nil, nil, err
	}
	return st, c, unlock, nil
}

func cmdStop(args []string) error {
	fs := newFlags("stop", "--dir DIR --cluster NAME",
		`Stops one cluster (etcd, API server, controller-manager, kubelet stand-in)
and keeps its data; testenv start brings it back on the same ports.`)
	dir := fs.String("dir", "", "environment `directory`")
	name := fs.String("cluster", "", "cluster `name`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	st, c, unlock, err := loadCluster(fs, *dir, *name)
	if err != nil {
		return err
	}
	defer unlock()
	if err := proc.Stop(c.PID, st.Dir, c.Name, stopGrace); err != nil {
		return err
	}
	c.PID = 0
	_ = os.Remove(state.PIDFile(st.Dir, c.Name))
	if ownerGone(st) && !anyServing(st) {
		removeEnvironment(st) // the owner died meanwhile; no cluster is left to clean up
		return nil
	}
	return st.Save()
}

func anyServing(st *state.State) bool {
	for _, c := range st.Clusters {
		if proc.IsServing(c.PID, st.Dir, c.Name) {
			return true
		}
	}
	return false
}

func cmdStart(args []string) error {
	fs := newFlags("start", "--dir DIR --cluster NAME [--timeout 2m]",
		`Starts a stopped cluster with the same ports, certificates and data and
waits until it is ready. Does nothing but wait for readiness if it runs.`)
	dir := fs.String("dir", "", "environment `directory`")
	name := fs.String("cluster", "", "cluster `name`")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the cluster to become ready")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	st, c, unlock, err := loadCluster(fs, *dir, *name)
	if err != nil {
		return err
	}
	defer unlock()
	ctx, cancel := signalContext(*timeout)
	defer cancel()
	if proc.IsServing(c.PID, st.Dir, c.Name) {
		return waitReady(ctx, c, nil)
	}
	c.PID = 0
	started := time.Now()
	if err := startClusters(ctx, st, []*state.Cluster{c}); err != nil {
		if ownerGone(st) {
			removeEnvironment(st)
		}
		return err
	}
	fmt.Printf("# %s %s ready in %s\n", c.Name, c.APIServerURL, time.Since(started).Round(100*time.Millisecond))
	return nil
}

// ---- status ---------------------------------------------------------------

func cmdStatus(args []string) error {
	fs := newFlags("status", "--dir DIR",
		`Prints each cluster's name, URL and state (ready, not ready: REASON, or
stopped). Exits 1 if any cluster is not ready.`)
	dir := fs.String("dir", "", "environment `directory`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	absDir, err := requireDir(fs, *dir)
	if err != nil {
		return err
	}
	st, err := state.Load(absDir)
	if err != nil {
		return err
	}
	notReady := 0
	for _, c := range st.Clusters {
		status := "ready"
		if !proc.IsServing(c.PID, absDir, c.Name) {
			status = "stopped"
			notReady++
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := cluster.Check(ctx, c); err != nil {
				status = "not ready: " + err.Error()
				notReady++
			}
			cancel()
		}
		fmt.Printf("%-10s %-26s %s\n", c.Name, c.APIServerURL, status)
		if c.Netns != "" {
			fmt.Printf("%-10s netns %s  wan %s  pods %s  services %s\n", "", c.Netns, c.WANAddress, c.PodCIDR, c.ServiceCIDR)
		}
	}
	if st.Network != nil {
		fmt.Printf("wan        netns %s  %s\n", st.Network.WANNamespace, st.Network.WANCIDR)
	}
	if notReady > 0 {
		return fmt.Errorf("%d of %d clusters not ready", notReady, len(st.Clusters))
	}
	return nil
}

// ---- serve-cluster (internal) ----------------------------------------------

func cmdServeCluster(args []string) error {
	fs := newFlags("serve-cluster", "--dir DIR --name NAME",
		`Internal: runs one cluster of DIR in the foreground (up and start run it
in the background). Stops on SIGTERM or SIGINT.`)
	dir := fs.String("dir", "", "environment `directory`")
	name := fs.String("name", "", "cluster `name`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" || *name == "" {
		return usageErrorf("serve-cluster: --dir and --name are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cluster.Serve(ctx, *dir, *name)
}
