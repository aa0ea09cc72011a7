// Package cluster runs one test cluster in the current process (etcd,
// kube-apiserver, kube-controller-manager and a kubelet stand-in) and checks
// from outside whether a cluster is ready.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/storage/wal"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"

	"liqo-wasm/testenv/internal/netns"
	"liqo-wasm/testenv/internal/pki"
	"liqo-wasm/testenv/internal/proc"
	"liqo-wasm/testenv/internal/state"
	"liqo-wasm/testenv/internal/version"
)

// ServiceAccountIssuer is the issuer of service-account tokens in every
// test cluster (the in-cluster default of real clusters).
const ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// Serve runs the named cluster of the environment in dir until ctx is done
// or a component fails. If the environment has an owner process (up
// --owner-pid) and that process exits, the cluster stops and deletes its data
// (the last cluster to go deletes the environment's files too).
func Serve(ctx context.Context, dir, name string) error {
	st, err := state.Load(dir)
	if err != nil {
		return err
	}
	c, err := st.Cluster(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var ownerGone atomic.Bool
	// Runs last, after etcd is closed on every return path.
	defer func() {
		if ownerGone.Load() {
			removeClusterFiles(st.Dir, c)
		}
	}()
	if st.OwnerPID > 0 {
		go func() {
			for ctx.Err() == nil {
				if !proc.Alive(st.OwnerPID) {
					klog.InfoS("testenv: owner process exited, stopping", "ownerPid", st.OwnerPID)
					ownerGone.Store(true)
					cancel(errors.New("owner process exited"))
					return
				}
				time.Sleep(time.Second)
			}
		}()
	}

	started := time.Now()
	etcd, err := startEtcd(c)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	klog.InfoS("testenv: etcd ready", "cluster", c.Name, "after", time.Since(started))

	runControllerManager, err := prepareControllerManager(c)
	if err != nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	apiDone := make(chan error, 1)
	go func() { apiDone <- runAPIServer(ctx, c) }()

	kubeletConfig, err := clientcmd.BuildConfigFromFlags("", c.KubeletKubeconfig())
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(kubeletConfig)
	if err != nil {
		return err
	}
	if err := waitAPIServer(ctx, client, apiDone); err != nil {
		cancel(err)
		etcd.Close()
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	klog.InfoS("testenv: kube-apiserver ready", "cluster", c.Name, "after", time.Since(started))

	kcmDone := make(chan error, 1)
	go func() { kcmDone <- runControllerManager(ctx) }()

	kl, err := newKubelet(client, c.NodeName, c.PodCIDR, version.Kubernetes())
	if err != nil {
		return err
	}
	// Network mode: the API server, which stays on the host's loopback, is
	// forwarded to the same address inside the cluster's namespace (and
	// each pod's), so one kubeconfig works everywhere; kube-proxy runs in
	// the cluster namespace.
	proxyDone := make(chan error, 1)
	if st.Network != nil {
		apiAddr := "127.0.0.1:" + strconv.Itoa(c.Ports.APIServer)
		if err := netns.Forward(ctx, c.Netns, apiAddr, apiAddr); err != nil {
			cancel(err)
			etcd.Close()
			return fmt.Errorf("forwarding the API server into namespace %s: %w", c.Netns, err)
		}
		// Peers reach this API server too (a consumer's host, running in its
		// cluster's namespace, reflects into this cluster): the same address
		// is forwarded into every other cluster's namespace, as the peer
		// command names it. Only API servers are, never pods or Services.
		for _, other := range st.Clusters {
			if other.Name == c.Name || other.Netns == "" {
				continue
			}
			if err := netns.Forward(ctx, other.Netns, apiAddr, apiAddr); err != nil {
				cancel(err)
				etcd.Close()
				return fmt.Errorf("forwarding the API server into peer namespace %s: %w", other.Netns, err)
			}
		}
		kl.enableNetwork(c.Netns, c.WANAddress, st.Network.PodBinaries, c.PodLogDir(), apiAddr)
		go func() { proxyDone <- runKubeProxy(ctx, c) }()
	}
	kubeletDone := make(chan error, 1)
	go func() { kubeletDone <- kl.run(ctx) }()

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-apiDone:
		runErr = fmt.Errorf("kube-apiserver exited: %v", err)
	case err := <-kcmDone:
		runErr = fmt.Errorf("kube-controller-manager exited: %v", err)
	case err := <-kubeletDone:
		runErr = fmt.Errorf("kubelet stand-in exited: %v", err)
	case err := <-proxyDone:
		runErr = err
	case err := <-etcd.Err():
		runErr = fmt.Errorf("etcd: %v", err)
	}
	cancel(runErr)
	klog.InfoS("testenv: shutting down", "cluster", c.Name, "reason", context.Cause(ctx))

	// Give the API server a moment to finish in-flight writes, then close
	// etcd cleanly so that the data survives for `testenv start`.
	select {
	case <-apiDone:
	case <-time.After(3 * time.Second):
	}
	if st.Network != nil {
		// Pod processes and kube-proxy stop with the cluster.
		select {
		case <-kubeletDone:
		case <-time.After(10 * time.Second):
		}
		select {
		case <-proxyDone:
		case <-time.After(5 * time.Second):
		}
	}
	closed := make(chan struct{})
	go func() { etcd.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		klog.InfoS("testenv: etcd did not close in time")
	}
	klog.Flush()
	return runErr
}

// removeClusterFiles deletes everything `up` created for cluster c; the last
// cluster to do so also removes the environment's own files (state.json and
// the directory itself, if empty). Used when the owner process is gone.
func removeClusterFiles(dir string, c *state.Cluster) {
	_ = os.RemoveAll(c.DataDir)
	_ = os.Remove(c.Kubeconfig)
	_ = os.Remove(state.PIDFile(dir, c.Name))
	unlock, err := state.Lock(dir)
	if err != nil {
		return
	}
	defer unlock()
	st, err := state.Load(dir)
	if err != nil {
		return
	}
	last := true
	for _, other := range st.Clusters {
		if other.Name == c.Name {
			other.PID = 0
		} else if proc.IsServing(other.PID, dir, other.Name) {
			last = false
		}
	}
	if !last {
		_ = st.Save()
		return
	}
	if st.Network != nil {
		// Pod processes, kube-proxies and namespaces of every cluster.
		_ = netns.Teardown(st.Network.Prefix)
	}
	for _, other := range st.Clusters { // clusters that were stopped, too
		_ = os.RemoveAll(other.DataDir)
		_ = os.Remove(other.Kubeconfig)
		_ = os.Remove(state.PIDFile(dir, other.Name))
	}
	_ = os.Remove(state.Path(dir))
	_ = os.Remove(filepath.Join(dir, ".lock"))
	_ = os.Remove(dir) // only if empty
}

func startEtcd(c *state.Cluster) (*embed.Etcd, error) {
	// Smaller preallocated WAL segments (default 64 MB): test data is tiny.
	wal.SegmentSizeBytes = 8 * 1024 * 1024

	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = c.EtcdDir()
	client := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(c.Ports.EtcdClient)}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(c.Ports.EtcdPeer)}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{c.EtcdLogFile()}
	// Data is written to the page cache and survives a process stop; only a
	// machine crash could lose it, which does not matter for test clusters.
	cfg.UnsafeNoFsync = true
	cfg.EnableGRPCGateway = false
	// Unset, it is 0 and etcd logs every request as slow.
	cfg.WarningUnaryRequestDuration = time.Second
	cfg.WarningApplyDuration = time.Second

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		e.Close()
		return nil, errors.New("not ready after 60s")
	}
}

// APIServerArgs are the kube-apiserver flags of cluster c.
func APIServerArgs(c *state.Cluster) []string {
	p := func(f string) string { return filepath.Join(c.PKIDir(), f) }
	return []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(c.Ports.EtcdClient),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.Ports.APIServer),
		"--cert-dir=" + filepath.Join(c.DataDir, "apiserver-certs"),
		"--tls-cert-file=" + p(pki.ServingCert),
		"--tls-private-key-file=" + p(pki.ServingKey),
		"--client-ca-file=" + p(pki.CACert),
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-account-key-file=" + p(pki.SAPub),
		"--service-account-signing-key-file=" + p(pki.SAKey),
		"--service-cluster-ip-range=" + c.ServiceCIDR,
		// The "kubernetes" Service would point at 127.0.0.1, which the
		// Endpoints validation rejects; nothing in a test cluster uses it.
		"--endpoint-reconciler-type=none",
		"--requestheader-client-ca-file=" + p(pki.FrontProxyCACert),
		"--requestheader-allowed-names=" + pki.FrontProxyClientName,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p(pki.FrontProxyClientCert),
		"--proxy-client-key-file=" + p(pki.FrontProxyClientKey),
		"--allow-privileged=true",
		"--profiling=false",
	}
}

func runAPIServer(ctx context.Context, c *state.Cluster) error {
	s := apiserveroptions.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(APIServerArgs(c)); err != nil {
		return err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	featureGate := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor("kube")
	// Logging is configured once per process, here; the controller-manager
	// shares it.
	if err := logsapi.ValidateAndApply(s.Logs, featureGate); err != nil {
		return err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	return apiserverapp.Run(ctx, completed)
}

// ControllerManagerArgs are the kube-controller-manager flags of cluster c.
func ControllerManagerArgs(c *state.Cluster) []string {
	p := func(f string) string { return filepath.Join(c.PKIDir(), f) }
	return []string{
		"--kubeconfig=" + c.ControllerKubeconfig(),
		"--authentication-kubeconfig=" + c.ControllerKubeconfig(),
		"--authorization-kubeconfig=" + c.ControllerKubeconfig(),
		"--client-ca-file=" + p(pki.CACert),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.Ports.ControllerManager),
		"--tls-cert-file=" + p(pki.ServingCert),
		"--tls-private-key-file=" + p(pki.ServingKey),
		"--leader-elect=false",
		"--controllers=*",
		"--service-account-private-key-file=" + p(pki.SAKey),
		"--root-ca-file=" + p(pki.CACert),
		"--cluster-name=" + c.Name,
		"--cluster-signing-cert-file=" + p(pki.CACert),
		"--cluster-signing-key-file=" + p(pki.CAKey),
		"--service-cluster-ip-range=" + c.ServiceCIDR,
		"--profiling=false",
	}
}

// prepareControllerManager parses the controller-manager's flags and returns
// the function that runs it. It must be called before the API server's
// options are built: both share the process-wide feature gate, which the
// controller-manager adjusts (WatchListClient) while building its flags, and
// which no one can change once a flag set holds it.
func prepareControllerManager(c *state.Cluster) (func(context.Context) error, error) {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, err
	}
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	known := kcmapp.KnownControllers()
	disabled := kcmapp.ControllersDisabledByDefault()
	aliases := kcmapp.ControllerAliases()
	named := s.Flags(known, disabled, aliases)
	s.ParsedFlags = &named
	for _, f := range named.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(ControllerManagerArgs(c)); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		// Feature gates and logging were set up by the API server of this
		// process (they are process-wide).
		config, err := s.Config(ctx, known, disabled, aliases)
		if err != nil {
			return err
		}
		return kcmapp.Run(ctx, config.Complete())
	}, nil
}

// waitAPIServer polls /readyz until it answers ok.
func waitAPIServer(ctx context.Context, client kubernetes.Interface, apiDone <-chan error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-apiDone:
			return false, fmt.Errorf("exited: %v", err)
		default:
		}
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			last = fmt.Errorf("%v: %s", err, body)
			return false, nil
		}
		return true, nil
	})
	if err != nil && last != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w (last /readyz answer: %v)", err, last)
	}
	return err
}
