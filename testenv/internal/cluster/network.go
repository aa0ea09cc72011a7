package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"liqo-wasm/testenv/internal/netns"
	"liqo-wasm/testenv/internal/state"
)

// KubeProxyHealthz is where kube-proxy serves /healthz inside a cluster
// namespace (200 once it has programmed the rules at least once).
const KubeProxyHealthz = "127.0.0.1:10256"

// KubeProxyArgs are the kube-proxy flags of cluster c (network mode).
func KubeProxyArgs(c *state.Cluster) []string {
	return []string{
		"--kubeconfig=" + c.KubeletKubeconfig(),
		"--hostname-override=" + c.NodeName,
		"--proxy-mode=iptables",
		"--cluster-cidr=" + c.PodCIDR,
		// conntrack limits are global sysctls (not per namespace): leave
		// the host's alone.
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		"--healthz-bind-address=" + KubeProxyHealthz,
		"--metrics-bind-address=127.0.0.1:10249",
		// NodePorts on the node's WAN address only (its InternalIP).
		"--nodeport-addresses=primary",
		"--v=1",
	}
}

// startInNetns starts cmd inside network namespace ns. The child gets
// SIGKILL if this process dies, so that nothing outlives a killed cluster.
func startInNetns(ns string, cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	return netns.Do(ns, cmd.Start)
}

// runKubeProxy runs `testenv serve-kube-proxy` inside the cluster's
// namespace until ctx is done; it returns when the process exits.
func runKubeProxy(ctx context.Context, c *state.Cluster) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(c.DataDir, "kube-proxy.log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = log.Close() }()
	cmd := exec.Command(exe, append([]string{"serve-kube-proxy"}, KubeProxyArgs(c)...)...)
	cmd.Stdout, cmd.Stderr, cmd.Dir = log, log, "/"
	if err := startInNetns(c.Netns, cmd); err != nil {
		return fmt.Errorf("starting kube-proxy: %w", err)
	}
	klog.InfoS("testenv: kube-proxy started", "cluster", c.Name, "pid", cmd.Process.Pid, "log", logPath)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return fmt.Errorf("kube-proxy exited (%v); see %s", err, logPath)
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		return nil
	}
}

// podNetwork runs pods as processes in their own network namespaces
// (network mode). A pod runs as a process when its first container's
// command[0] names an executable in binDir; the others are reported running
// without any process, as outside network mode.
type podNetwork struct {
	clusterNS string
	hostIP    string
	binDir    string
	logDir    string
	// apiServer is host:port of the API server on the host's loopback; it
	// is forwarded into every pod namespace at the same address.
	apiServer string
	// changed is called with a pod whose process became ready, unready or
	// exited, so that the kubelet reports it.
	changed func(types.NamespacedName)

	mu    sync.Mutex
	procs map[types.UID]*podProc
}

// podProc is one pod process and its readiness.
type podProc struct {
	net      netns.Pod
	cmd      *exec.Cmd
	exited   chan struct{}
	ready    atomic.Bool
	restarts int32
	stop     context.CancelFunc
}

// binary returns the executable that runs pod, or "" if the pod has none.
func (n *podNetwork) binary(pod *corev1.Pod) string {
	if n == nil || n.binDir == "" || len(pod.Spec.Containers) == 0 || pod.Spec.HostNetwork {
		return ""
	}
	command := pod.Spec.Containers[0].Command
	if len(command) == 0 || command[0] == "" {
		return ""
	}
	path := filepath.Join(n.binDir, filepath.Base(command[0]))
	info, err := os.Stat(path)
	if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		return ""
	}
	return path
}

// containerPort is the first port of the first container, 0 if none.
func containerPort(pod *corev1.Pod) int32 {
	if len(pod.Spec.Containers) == 0 || len(pod.Spec.Containers[0].Ports) == 0 {
		return 0
	}
	return pod.Spec.Containers[0].Ports[0].ContainerPort
}

// state returns whether the pod's process runs and is ready, and its
// restart count.
func (n *podNetwork) state(uid types.UID) (running, ready bool, restarts int32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.procs[uid]
	if p == nil {
		return false, false, 0
	}
	select {
	case <-p.exited:
		return false, false, p.restarts
	default:
		return true, p.ready.Load(), p.restarts
	}
}

// ensure starts the pod's process with IP podIP unless it runs already. A
// process that exited is started again (restartPolicy Always, as every
// Deployment's pods have).
func (n *podNetwork) ensure(ctx context.Context, pod *corev1.Pod, bin, podIP string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	old := n.procs[pod.UID]
	var restarts int32
	if old != nil {
		select {
		case <-old.exited:
			restarts = old.restarts + 1
			old.stop()
		default:
			return nil // running
		}
	}
	p := &podProc{net: netns.Pod{ClusterNamespace: n.clusterNS, IP: podIP}, exited: make(chan struct{}), restarts: restarts}
	if err := netns.SetupPod(p.net); err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	pctx, cancel := context.WithCancel(ctx)
	p.stop = cancel
	// The same kubeconfig works in the pod as on the host.
	if err := netns.Forward(pctx, p.net.Namespace(), n.apiServer, n.apiServer); err != nil {
		cancel()
		return fmt.Errorf("forwarding the API server into the pod: %w", err)
	}
	if err := os.MkdirAll(n.logDir, 0o755); err != nil {
		cancel()
		return err
	}
	logPath := filepath.Join(n.logDir, pod.Namespace+"_"+pod.Name+".log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		cancel()
		return err
	}
	defer func() { _ = log.Close() }()
	c := pod.Spec.Containers[0]
	cmd := exec.Command(bin, append(append([]string{}, c.Command[1:]...), c.Args...)...)
	cmd.Args[0] = c.Command[0]
	cmd.Env = n.env(pod, podIP)
	cmd.Stdout, cmd.Stderr, cmd.Dir = log, log, "/"
	// Its own process group, so that stopping the pod stops its children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fmt.Fprintf(log, "==== testenv: starting %s (pod %s/%s, IP %s) at %s ====\n",
		bin, pod.Namespace, pod.Name, podIP, time.Now().Format(time.RFC3339))
	if err := startInNetns(p.net.Namespace(), cmd); err != nil {
		cancel()
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	p.cmd = cmd
	n.procs[pod.UID] = p
	klog.InfoS("testenv-kubelet: pod process started", "pod", klog.KObj(pod), "pid", cmd.Process.Pid, "ip", podIP, "binary", bin)
	key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
	go func() {
		err := cmd.Wait()
		close(p.exited)
		p.ready.Store(false)
		if pctx.Err() == nil {
			klog.InfoS("testenv-kubelet: pod process exited", "pod", key, "err", err)
			// Restarted by the next sync; wait a little first so that a
			// binary that fails at once does not spin.
			time.AfterFunc(time.Second, func() { n.changed(key) })
		}
	}()
	go n.probe(pctx, p, key, containerPort(pod))
	return nil
}

// probe is the readiness probe: the pod is ready while its first
// containerPort accepts TCP connections on the pod IP (checked from the
// cluster namespace, as a kubelet checks from the node). Without a port,
// the pod is ready while its process runs.
func (n *podNetwork) probe(ctx context.Context, p *podProc, key types.NamespacedName, port int32) {
	addr := net.JoinHostPort(p.net.IP, strconv.Itoa(int(port)))
	for {
		ok := port == 0
		if port != 0 {
			dctx, cancel := context.WithTimeout(ctx, time.Second)
			conn, err := netns.DialContext(dctx, n.clusterNS, "tcp", addr)
			cancel()
			if err == nil {
				_ = conn.Close()
				ok = true
			}
		}
		select {
		case <-p.exited:
			return
		default:
		}
		if p.ready.Swap(ok) != ok {
			n.changed(key)
		}
		wait := time.Second
		if !ok {
			wait = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-p.exited:
			return
		case <-time.After(wait):
		}
	}
}

// env is the process environment: POD_IP, POD_NAME, POD_NAMESPACE and PORT
// (the first containerPort), then the container's env (literal values and
// the usual downward-API fields), which wins over those four.
func (n *podNetwork) env(pod *corev1.Pod, podIP string) []string {
	defined := map[string]bool{}
	for _, e := range pod.Spec.Containers[0].Env {
		defined[e.Name] = true
	}
	env := []string{"PATH=" + os.Getenv("PATH")}
	add := func(name, value string) {
		if !defined[name] {
			env = append(env, name+"="+value)
		}
	}
	add("POD_IP", podIP)
	add("POD_NAME", pod.Name)
	add("POD_NAMESPACE", pod.Namespace)
	if port := containerPort(pod); port != 0 {
		add("PORT", strconv.Itoa(int(port)))
	}
	for _, e := range pod.Spec.Containers[0].Env {
		value := e.Value
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil {
				continue // Secrets and ConfigMaps are not resolved here
			}
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				value = pod.Name
			case "metadata.namespace":
				value = pod.Namespace
			case "status.podIP":
				value = podIP
			case "status.hostIP":
				value = n.hostIP
			case "spec.nodeName":
				value = pod.Spec.NodeName
			default:
				continue
			}
		}
		env = append(env, e.Name+"="+value)
	}
	return env
}

// kill stops the pod's process (SIGTERM to its process group, SIGKILL
// after grace) and deletes its namespace. No-op for unknown pods.
func (n *podNetwork) kill(uid types.UID, grace time.Duration) error {
	n.mu.Lock()
	p := n.procs[uid]
	delete(n.procs, uid)
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	p.stop()
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.exited
	}
	return netns.DeletePod(p.net)
}

// killAll stops every pod process (when the cluster stops).
func (n *podNetwork) killAll() {
	n.mu.Lock()
	uids := make([]types.UID, 0, len(n.procs))
	for uid := range n.procs {
		uids = append(uids, uid)
	}
	n.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(uids))
	for i, uid := range uids {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = n.kill(uid, 2*time.Second) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		klog.InfoS("testenv-kubelet: stopping pod processes", "err", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
}
