package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"liqo-wasm/testenv/internal/netns"
	"liqo-wasm/testenv/internal/pki"
	"liqo-wasm/testenv/internal/state"
)

// WriteKubeconfigs writes the admin kubeconfig (c.Kubeconfig, everything
// embedded so the file can be copied anywhere) and the kubeconfigs of the
// controller-manager and the kubelet stand-in.
func WriteKubeconfigs(c *state.Cluster) error {
	read := func(f string) ([]byte, error) { return os.ReadFile(filepath.Join(c.PKIDir(), f)) }
	ca, err := read(pki.CACert)
	if err != nil {
		return err
	}
	for _, kc := range []struct{ path, cert, key string }{
		{c.Kubeconfig, pki.AdminCert, pki.AdminKey},
		{c.ControllerKubeconfig(), pki.ControllerCert, pki.ControllerKey},
		{c.KubeletKubeconfig(), pki.KubeletCert, pki.KubeletKey},
	} {
		cert, err := read(kc.cert)
		if err != nil {
			return err
		}
		key, err := read(kc.key)
		if err != nil {
			return err
		}
		user := "admin"
		if kc.path != c.Kubeconfig {
			user = kc.cert[:len(kc.cert)-len(filepath.Ext(kc.cert))]
		}
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters[c.Name] = &clientcmdapi.Cluster{Server: c.APIServerURL, CertificateAuthorityData: ca}
		cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
		cfg.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: user, Namespace: "default"}
		cfg.CurrentContext = c.Name
		if err := clientcmd.WriteToFile(*cfg, kc.path); err != nil {
			return err
		}
		if err := os.Chmod(kc.path, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Check tells whether cluster c is ready: the API server answers /readyz,
// the controller-manager answers /healthz and has created the default
// ServiceAccount (so its controllers run), and the Node is Ready.
func Check(ctx context.Context, c *state.Cluster) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.Timeout = 5 * time.Second
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		if line := firstLine(body); line != "" && !strings.Contains(err.Error(), line) {
			return fmt.Errorf("kube-apiserver /readyz: %v: %s", err, line)
		}
		return fmt.Errorf("kube-apiserver /readyz: %v", err)
	}
	if err := controllerManagerHealthy(ctx, c); err != nil {
		return fmt.Errorf("kube-controller-manager /healthz: %v", err)
	}
	if _, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		return fmt.Errorf("waiting for the serviceaccount controller: %v", err)
	}
	node, err := client.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("node %s: %v", c.NodeName, err)
	}
	ready := false
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready {
		return fmt.Errorf("node %s is not Ready", c.NodeName)
	}
	if c.Netns != "" {
		return networkReady(ctx, c)
	}
	return nil
}

// networkReady checks network mode inside the cluster's namespace: the
// API server is reachable at its usual address (the forwarder) and
// kube-proxy has programmed its rules (/healthz 200).
func networkReady(ctx context.Context, c *state.Cluster) error {
	apiAddr := "127.0.0.1:" + strconv.Itoa(c.Ports.APIServer)
	conn, err := netns.DialContext(ctx, c.Netns, "tcp", apiAddr)
	if err != nil {
		return fmt.Errorf("API server forwarder in namespace %s: %v", c.Netns, err)
	}
	_ = conn.Close()
	status, body, err := HTTPGet(ctx, c.Netns, "http://"+KubeProxyHealthz+"/healthz")
	if err != nil {
		return fmt.Errorf("kube-proxy /healthz in namespace %s: %v", c.Netns, err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("kube-proxy /healthz in namespace %s: %d %s", c.Netns, status, firstLine(body))
	}
	return nil
}

// HTTPGet sends GET url from inside network namespace ns (plain HTTP or
// HTTPS without verification: test traffic between namespaces) and returns
// the status code and up to 16 MiB of the body.
func HTTPGet(ctx context.Context, ns, url string) (int, []byte, error) {
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return netns.DialContext(ctx, ns, network, addr)
			},
			DisableKeepAlives: true,
			Proxy:             nil,
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, body, err
}

func controllerManagerHealthy(ctx context.Context, c *state.Cluster) error {
	ca, err := os.ReadFile(filepath.Join(c.PKIDir(), pki.CACert))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	httpClient := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}},
	}
	defer httpClient.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"https://127.0.0.1:"+strconv.Itoa(c.Ports.ControllerManager)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, firstLine(body))
	}
	return nil
}

func firstLine(b []byte) string {
	for i, ch := range b {
		if ch == '\n' {
			return string(b[:i])
		}
	}
	return string(b)
}
