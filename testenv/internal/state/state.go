// Package state reads and writes DIR/state.json, the one file that describes
// a test environment: which clusters it has, their ports, CIDRs, kubeconfigs
// and the pid of the process serving each of them.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// FileName is the name of the state file inside the environment directory.
const FileName = "state.json"

// State is the content of DIR/state.json.
type State struct {
	// Version of this format; bumped on incompatible changes.
	Version int `json:"version"`
	// Dir is the absolute environment directory.
	Dir string `json:"dir"`
	// OwnerPID, when not zero, is a process whose exit makes every cluster
	// stop itself and delete its data (used by test harnesses).
	OwnerPID int `json:"ownerPid,omitempty"`
	// Network is set in network mode (up --network): the clusters have
	// their own network namespaces linked by a WAN.
	Network  *Network   `json:"network,omitempty"`
	Clusters []*Cluster `json:"clusters"`
}

// Network describes network mode: the namespaces of the environment and
// where the kubelet stand-ins find the binaries they run as pods.
type Network struct {
	// Prefix starts the name of every network namespace of the
	// environment: lt-<8 hex digits of sha256(dir)>-.
	Prefix string `json:"prefix"`
	// WANNamespace holds the bridge linking the cluster namespaces.
	WANNamespace string `json:"wanNamespace"`
	// WANCIDR is the network between the clusters (each cluster namespace
	// has one address in it, Cluster.WANAddress).
	WANCIDR string `json:"wanCIDR"`
	// PodBinaries is the directory whose executables the kubelet stand-ins
	// run as pod processes (up --pod-binaries); empty: none.
	PodBinaries string `json:"podBinaries,omitempty"`
}

// Cluster describes one cluster of the environment.
type Cluster struct {
	Name string `json:"name"`
	// APIServerURL is https://127.0.0.1:PORT.
	APIServerURL string `json:"apiServerURL"`
	// Kubeconfig is the absolute path of the admin kubeconfig (context,
	// cluster and user are all named after the cluster).
	Kubeconfig string `json:"kubeconfig"`
	// PodCIDR is the range pod IPs are allocated from by the kubelet stand-in.
	PodCIDR string `json:"podCIDR"`
	// ServiceCIDR is the API server's --service-cluster-ip-range.
	ServiceCIDR string `json:"serviceCIDR"`
	// NodeName is the name of the single (fake) Node.
	NodeName string `json:"nodeName"`
	// PID of the serve-cluster process; 0 when the cluster is stopped.
	PID int `json:"pid"`
	// DataDir holds etcd data, certificates and logs of this cluster.
	DataDir string `json:"dataDir"`
	// LogFile receives the output of the API server, controller-manager and
	// kubelet stand-in.
	LogFile string `json:"logFile"`
	Ports   Ports  `json:"ports"`
	// Netns is the cluster's network namespace (network mode only).
	Netns string `json:"netns,omitempty"`
	// WANAddress is the cluster namespace's address on the WAN, also its
	// Node's InternalIP (network mode only).
	WANAddress string `json:"wanAddress,omitempty"`
}

// PodLogDir holds the output of pod processes (network mode).
func (c *Cluster) PodLogDir() string { return filepath.Join(c.DataDir, "pods") }

// Ports are the loopback ports one cluster listens on.
type Ports struct {
	APIServer         int `json:"apiServer"`
	EtcdClient        int `json:"etcdClient"`
	EtcdPeer          int `json:"etcdPeer"`
	ControllerManager int `json:"controllerManager"`
}

// All returns the ports with a description for error messages.
func (p Ports) All() map[string]int {
	return map[string]int{
		"kube-apiserver":          p.APIServer,
		"etcd client":             p.EtcdClient,
		"etcd peer":               p.EtcdPeer,
		"kube-controller-manager": p.ControllerManager,
	}
}

// PKIDir is where the cluster's certificates and keys live.
func (c *Cluster) PKIDir() string { return filepath.Join(c.DataDir, "pki") }

// EtcdDir is etcd's data directory.
func (c *Cluster) EtcdDir() string { return filepath.Join(c.DataDir, "etcd") }

// ControllerKubeconfig is the controller-manager's kubeconfig.
func (c *Cluster) ControllerKubeconfig() string {
	return filepath.Join(c.DataDir, "controller-manager.kubeconfig")
}

// KubeletKubeconfig is the kubelet stand-in's kubeconfig.
func (c *Cluster) KubeletKubeconfig() string {
	return filepath.Join(c.DataDir, "kubelet.kubeconfig")
}

// EtcdLogFile receives etcd's own log.
func (c *Cluster) EtcdLogFile() string { return filepath.Join(c.DataDir, "etcd.log") }

// PIDFile is DIR/<name>.pid, written while the cluster runs.
func PIDFile(dir, name string) string { return filepath.Join(dir, name+".pid") }

// EnvVarName is the name of the variable `up` suggests for the kubeconfig:
// KUBECONFIG_LONDON for london.
func EnvVarName(cluster string) string {
	return "KUBECONFIG_" + strings.ToUpper(strings.ReplaceAll(cluster, "-", "_"))
}

// Path is DIR/state.json.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// ErrNotFound is returned by Load when DIR has no state file.
var ErrNotFound = errors.New("no test environment")

// Load reads DIR/state.json.
func Load(dir string) (*State, error) {
	data, err := os.ReadFile(Path(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s (no %s; run `testenv up --dir %s` first)", ErrNotFound, dir, FileName, dir)
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", Path(dir), err)
	}
	return &s, nil
}

// Save writes the state atomically (temporary file + rename).
func (s *State) Save() error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := Path(s.Dir) + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, Path(s.Dir))
}

// Cluster returns the named cluster or an error listing the known ones.
func (s *State) Cluster(name string) (*Cluster, error) {
	var names []string
	for _, c := range s.Clusters {
		if c.Name == name {
			return c, nil
		}
		names = append(names, c.Name)
	}
	return nil, fmt.Errorf("no cluster %q in %s (clusters: %s)", name, s.Dir, strings.Join(names, ", "))
}

// Lock takes an exclusive lock on DIR/.lock so that two testenv commands do
// not change the same environment at once. Call the returned func to unlock.
func Lock(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { _ = f.Close() }, nil
}
