// Package netns builds and removes the network namespaces of testenv's
// network mode and runs code, listeners, dials and processes inside them.
//
// Topology (see README.md): one namespace per cluster (the "node"), one per
// pod with a real process, and one "wan" namespace holding a bridge that
// links the cluster namespaces. Every namespace of an environment is named
// with the environment's prefix, lt-<8 hex of sha256(dir)>-, so that `down`
// and a later `up` on the same directory find all of them, and environments
// of parallel test binaries never share a name.
package netns

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RunDir is where `ip netns` keeps the bind mounts that name namespaces.
const RunDir = "/run/netns"

// WANCIDR is the network between the clusters: cluster i gets WANAddress(i).
const WANCIDR = "172.30.0.0/24"

// LinkLocalGateway is the next hop every pod namespace routes through, as
// with Calico: the cluster namespace owns it (on lo), so it answers ARP for
// it on every pod veth.
const LinkLocalGateway = "169.254.1.1"

// Prefix is the name prefix of every namespace of the environment in dir.
func Prefix(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return "lt-" + hex.EncodeToString(sum[:4]) + "-"
}

// WANNamespace is the name of the namespace holding the WAN bridge.
func WANNamespace(prefix string) string { return prefix + "wan" }

// ClusterNamespace is the name of cluster's namespace.
func ClusterNamespace(prefix, cluster string) string { return prefix + cluster }

// WANAddress is the address of the i-th cluster (from 0) on the WAN.
func WANAddress(i int) string { return "172.30.0." + strconv.Itoa(10+i) }

// PodNamespace is the name of the namespace of the pod with IP podIP in the
// cluster whose namespace is clusterNS.
func PodNamespace(clusterNS, podIP string) string {
	return clusterNS + "-pod-" + strings.ReplaceAll(podIP, ".", "-")
}

// podVeth is the cluster-side name of a pod's veth (at most 15 bytes):
// "vp" and the pod IP in hex.
func podVeth(podIP string) string {
	ip := net.ParseIP(podIP).To4()
	return "vp" + hex.EncodeToString(ip)
}

// ip runs `ip ARGS...` and returns its error with its output.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// sysctl sets a sysctl inside namespace ns (they are per namespace under
// net.*).
func sysctl(ns, key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	return Do(ns, func() error {
		// /proc/sys/net shows the namespace of the thread that opens it.
		return os.WriteFile(path, []byte(value), 0o644)
	})
}

// Exists reports whether the named namespace exists.
func Exists(name string) bool {
	_, err := os.Stat(filepath.Join(RunDir, name))
	return err == nil
}

// CheckSupported fails with a clear message when network mode cannot work
// here: not root, or no `ip`/`iptables` binary.
func CheckSupported() error {
	if os.Geteuid() != 0 {
		return errors.New("network mode needs root (it creates network namespaces and iptables rules); run as root")
	}
	for _, bin := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("network mode needs %s (Debian: apt-get install -y iproute2 iptables; `make setup` does it)", bin)
		}
	}
	return nil
}

// ClusterLink is what SetupWAN needs to know of one cluster.
type ClusterLink struct {
	// Namespace is the cluster's namespace name.
	Namespace string
	// WANAddress is its address on the WAN (in WANCIDR).
	WANAddress string
	// PodCIDR is the cluster's pod CIDR (routed to nowhere but its pods).
	PodCIDR string
	// ServiceCIDR is routed locally so that connect() to a ClusterIP
	// succeeds and kube-proxy's DNAT in the nat OUTPUT chain applies.
	ServiceCIDR string
}

// Setup creates the WAN namespace and every cluster namespace with its link
// to the WAN. It removes what it made if a step fails.
func Setup(prefix string, clusters []ClusterLink) (err error) {
	defer func() {
		if err != nil {
			_ = Teardown(prefix)
		}
	}()
	wan := WANNamespace(prefix)
	if err := ip("netns", "add", wan); err != nil {
		return err
	}
	if err := ip("-n", wan, "link", "set", "lo", "up"); err != nil {
		return err
	}
	if err := ip("-n", wan, "link", "add", "br0", "type", "bridge"); err != nil {
		return err
	}
	if err := ip("-n", wan, "link", "set", "br0", "up"); err != nil {
		return err
	}
	for i, c := range clusters {
		ns := c.Namespace
		if err := ip("netns", "add", ns); err != nil {
			return err
		}
		// Forwarding lets pods (their own namespaces) reach ClusterIPs, one
		// another and the WAN through the cluster namespace, like a node.
		// route_localnet lets kube-proxy's localhost NodePort rules work.
		for key, v := range map[string]string{
			"net.ipv4.ip_forward":              "1",
			"net.ipv4.conf.all.route_localnet": "1",
		} {
			if err := sysctl(ns, key, v); err != nil {
				return fmt.Errorf("namespace %s: sysctl %s: %w", ns, key, err)
			}
		}
		peer := "c" + strconv.Itoa(i)
		steps := [][]string{
			{"-n", ns, "link", "set", "lo", "up"},
			{"-n", ns, "addr", "add", LinkLocalGateway + "/32", "dev", "lo", "scope", "link"},
			{"-n", ns, "link", "add", "wan0", "type", "veth", "peer", "name", peer, "netns", wan},
			{"-n", ns, "addr", "add", c.WANAddress + "/24", "dev", "wan0"},
			{"-n", ns, "link", "set", "wan0", "up"},
			{"-n", wan, "link", "set", peer, "master", "br0"},
			{"-n", wan, "link", "set", peer, "up"},
			// Pod IPs are /32 routes to their veths; anything else of the
			// pod CIDR fails at once instead of leaving the namespace.
			{"-n", ns, "route", "add", "unreachable", c.PodCIDR},
			// ClusterIPs: a route (any local device) so that connect()
			// gets as far as the nat OUTPUT chain, where kube-proxy's DNAT
			// sends the packet to a pod. The source is the node's WAN
			// address, as on a node whose primary address is that.
			{"-n", ns, "route", "add", c.ServiceCIDR, "dev", "lo", "src", c.WANAddress},
		}
		for _, s := range steps {
			if err := ip(s...); err != nil {
				return err
			}
		}
	}
	return nil
}

// Teardown kills every process in the namespaces whose names start with
// prefix and deletes those namespaces (their veths go with them). It is a
// no-op when there are none.
func Teardown(prefix string) error {
	names, err := List(prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		KillProcesses(n)
	}
	for _, n := range names {
		if err := Delete(n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Delete deletes one namespace (no-op if it does not exist).
func Delete(name string) error {
	if !Exists(name) {
		return nil
	}
	return ip("netns", "delete", name)
}

// List returns the namespaces whose names start with prefix.
func List(prefix string) ([]string, error) {
	entries, err := os.ReadDir(RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Pids returns the processes whose network namespace is the named one.
func Pids(name string) []int {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(RunDir, name), &st); err != nil {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var ps unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &ps) != nil {
			continue
		}
		if ps.Dev == st.Dev && ps.Ino == st.Ino {
			pids = append(pids, pid)
		}
	}
	return pids
}

// KillProcesses sends SIGKILL to every process in the named namespace and
// waits (up to 5 s) until they are gone.
func KillProcesses(name string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := Pids(name)
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Do runs fn on an OS thread that is inside namespace name, then puts the
// thread back. Sockets created by fn belong to that namespace for their
// whole life, and processes started by fn start in it.
func Do(name string, fn func() error) error {
	target, err := os.Open(filepath.Join(RunDir, name))
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", name, err)
	}
	defer func() { _ = target.Close() }()
	errc := make(chan error, 1)
	// A fresh goroutine: its thread is either restored or, if restoring
	// fails, left locked so that Go discards it when the goroutine ends.
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer func() { _ = self.Close() }()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leaving network namespace %s: %w", name, err))
			return // the thread stays locked and dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a TCP listener on addr inside namespace name.
func Listen(name, addr string) (net.Listener, error) {
	var l net.Listener
	err := Do(name, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// DialContext opens a TCP connection from inside namespace name. The socket
// is created in the namespace; connecting may finish on any thread.
func DialContext(ctx context.Context, name, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := Do(name, func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Forward listens on listenAddr inside namespace name and forwards every
// accepted connection to target, dialled from this process's own namespace
// (the host). It stops when ctx is done. testenv uses it to make the API
// server, which listens on the host's 127.0.0.1, reachable at the same
// address inside cluster and pod namespaces, so the same kubeconfig works.
func Forward(ctx context.Context, name, listenAddr, target string) error {
	l, err := Listen(name, listenAddr)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		_ = l.Close()
	}()
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go pipe(in, target)
		}
	}()
	return nil
}

func pipe(in net.Conn, target string) {
	defer func() { _ = in.Close() }()
	out, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer func() { _ = out.Close() }()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(out, in)
	go cp(in, out)
	<-done
	<-done
}

// Pod describes the namespace of one pod.
type Pod struct {
	// ClusterNamespace is the namespace of the pod's cluster.
	ClusterNamespace string
	// IP is the pod's IP (from the cluster's pod CIDR).
	IP string
}

// Namespace is the pod's namespace name.
func (p Pod) Namespace() string { return PodNamespace(p.ClusterNamespace, p.IP) }

// SetupPod creates the pod's namespace, replacing one left by an earlier
// run: lo up, eth0 with the pod IP (/32) and a default route through the
// cluster namespace (via 169.254.1.1), and the /32 route back.
func SetupPod(p Pod) (err error) {
	ns := p.Namespace()
	if Exists(ns) {
		KillProcesses(ns)
		if err := Delete(ns); err != nil {
			return err
		}
	}
	defer func() {
		if err != nil {
			_ = DeletePod(p)
		}
	}()
	if err := ip("netns", "add", ns); err != nil {
		return err
	}
	veth := podVeth(p.IP)
	steps := [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", p.ClusterNamespace, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", ns, "addr", "add", p.IP + "/32", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", LinkLocalGateway, "dev", "eth0", "scope", "link"},
		{"-n", ns, "route", "add", "default", "via", LinkLocalGateway, "dev", "eth0"},
		{"-n", p.ClusterNamespace, "link", "set", veth, "up"},
		{"-n", p.ClusterNamespace, "route", "add", p.IP + "/32", "dev", veth},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// DeletePod kills the processes left in the pod's namespace and deletes it
// (the veth pair and the /32 route go with it).
func DeletePod(p Pod) error {
	ns := p.Namespace()
	KillProcesses(ns)
	return Delete(ns)
}
