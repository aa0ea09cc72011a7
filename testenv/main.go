// Command testenv runs real Kubernetes control planes (etcd, kube-apiserver,
// kube-controller-manager and a kubelet stand-in) on 127.0.0.1 for tests and
// demos. Invoked through a link named kubectl, it is kubectl.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"

	"liqo-wasm/testenv/internal/version"
)

const usage = `testenv runs real Kubernetes control planes on 127.0.0.1 for tests and demos.

Each cluster is one background process running etcd, kube-apiserver,
kube-controller-manager and a kubelet stand-in that registers one fake Node,
binds pods to it and reports them Running and Ready with an IP from the
cluster's pod CIDR (no container runs). Everything is built from the
Kubernetes Go modules (` + "{{VERSION}}" + `).

Usage:
  testenv up     --dir DIR [--clusters london,newyork] [--pod-cidr NAME=CIDR,...]
                 [--service-cidr NAME=CIDR,...] [--timeout 2m] [--owner-pid PID]
                 [--network [--pod-binaries DIR]]
  testenv status --dir DIR
  testenv stop   --dir DIR --cluster NAME
  testenv start  --dir DIR --cluster NAME [--timeout 2m]
  testenv down   --dir DIR
  testenv exec   --dir DIR --cluster NAME -- COMMAND [ARGS...]   (network mode)
  testenv http-get --dir DIR --cluster NAME URL                  (network mode)
  testenv kubectl ARGS...      (or run the binary through a link named kubectl)
  testenv COMMAND --help       (the flags of one command)

Commands:
  up      start the clusters, wait until each is ready (API server /readyz,
          controller-manager /healthz, default ServiceAccount, Node Ready),
          print how to reach them and return; the clusters keep running.
  status  print each cluster's URL and state; exit 1 if any is not ready.
  stop    stop one cluster (its whole process), keeping its data.
  start   start a stopped cluster again with the same ports, certificates
          and data, and wait until it is ready.
  down    stop every cluster of DIR and delete what up created there.
  exec    run a command inside a cluster's network namespace.
  http-get  GET a URL from inside a cluster's network namespace; print the body.

Network mode (up --network, root only): each cluster gets its own network
namespace (with a real kube-proxy, iptables mode) linked to the others by a
"WAN" bridge (172.30.0.0/24); pods whose first container's command[0] names
an executable in --pod-binaries run as processes in their own namespaces with
their pod IPs. See README.md.

Defaults: cluster i (from 0, in --clusters order) gets the Service CIDR
10.(96+i).0.0/16 (london 10.96.0.0/16, newyork 10.97.0.0/16) and the pod
CIDR 10.(200+i).0.0/16 (london 10.200.0.0/16, newyork 10.201.0.0/16), as
clusters whose networks are connected must; --pod-cidr gives overlapping ones.

DIR afterwards holds:
  DIR/NAME.kubeconfig   admin kubeconfig; context, cluster and user "NAME"
  DIR/state.json        clusters, URLs, CIDRs, ports, pids (see README.md)
  DIR/NAME.pid          pid of the cluster's process while it runs
  DIR/NAME/cluster.log  API server, controller-manager and kubelet log
  DIR/NAME/etcd.log     etcd log

Example:
  eval "$(testenv up --dir /tmp/env)"     # prints export KUBECONFIG_LONDON=...
  kubectl --kubeconfig "$KUBECONFIG_LONDON" get nodes
  testenv down --dir /tmp/env
`

func main() {
	version.Set()

	if strings.HasPrefix(filepath.Base(os.Args[0]), "kubectl") {
		runKubectl()
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, helpText())
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "up":
		err = cmdUp(args)
	case "down":
		err = cmdDown(args)
	case "stop":
		err = cmdStop(args)
	case "start":
		err = cmdStart(args)
	case "status":
		err = cmdStatus(args)
	case "serve-cluster":
		err = cmdServeCluster(args)
	case "serve-kube-proxy":
		err = cmdServeKubeProxy(args)
	case "exec":
		err = cmdExec(args)
	case "http-get":
		err = cmdHTTPGet(args)
	case "kubectl":
		os.Args = append([]string{"kubectl"}, args...)
		runKubectl()
		return
	case "version", "--version":
		fmt.Println("testenv with Kubernetes " + version.Kubernetes())
		return
	case "help", "-h", "-help", "--help":
		fmt.Print(helpText())
		return
	default:
		err = usageErrorf("unknown command %q (commands: up, down, stop, start, status, exec, http-get, kubectl; see testenv --help)", cmd)
	}
	if err != nil {
		if errors.Is(err, errHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "testenv: "+err.Error())
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func helpText() string {
	return strings.ReplaceAll(usage, "{{VERSION}}", "Kubernetes "+version.Kubernetes())
}

// runKubectl is kubectl's own main.
func runKubectl() {
	// The control-plane packages linked into this binary register --version
	// (k8s.io/component-base/version/verflag) on the global flag set, which
	// cobra merges into every command. kubectl has no such flag: drop it.
	global := pflag.NewFlagSet(os.Args[0], pflag.ExitOnError)
	pflag.CommandLine.VisitAll(func(f *pflag.Flag) {
		if f.Name != "version" {
			global.AddFlag(f)
		}
	})
	pflag.CommandLine = global

	command := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		kubectlutil.CheckErr(err)
	}
}

// usageError marks errors in the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// errHelp is returned when --help was asked for and printed.
var errHelp = errors.New("help requested")
