// Package pki generates the certificates and keys one test cluster needs:
// a CA, a serving certificate for 127.0.0.1/localhost, client certificates
// (admin, controller-manager, kubelet stand-in) and the service-account
// signing key pair. Everything is written as PEM files into one directory.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names inside a cluster's pki directory.
const (
	CACert         = "ca.crt"
	CAKey          = "ca.key"
	ServingCert    = "serving.crt"
	ServingKey     = "serving.key"
	AdminCert      = "admin.crt"
	AdminKey       = "admin.key"
	ControllerCert = "controller-manager.crt"
	ControllerKey  = "controller-manager.key"
	KubeletCert    = "kubelet.crt"
	KubeletKey     = "kubelet.key"
	SAKey          = "sa.key"
	SAPub          = "sa.pub"

	FrontProxyCACert     = "front-proxy-ca.crt"
	FrontProxyCAKey      = "front-proxy-ca.key"
	FrontProxyClientCert = "front-proxy-client.crt"
	FrontProxyClientKey  = "front-proxy-client.key"
	// FrontProxyClientName is the common name the API server presents to
	// aggregated API servers.
	FrontProxyClientName = "front-proxy-client"
)

// validity of every certificate; test clusters do not live for ten years.
const validity = 10 * 365 * 24 * time.Hour

// Generate writes a full set of credentials for one cluster into dir.
// clusterName ends up in the CAs' common names so that two clusters' CAs are
// told apart in error messages.
func Generate(dir, clusterName string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour) // tolerate small clock skew
	ca, err := newCA(dir, CACert, CAKey, "testenv-"+clusterName+"-ca", now)
	if err != nil {
		return err
	}
	frontProxyCA, err := newCA(dir, FrontProxyCACert, FrontProxyCAKey, "testenv-"+clusterName+"-front-proxy-ca", now)
	if err != nil {
		return err
	}

	leaves := []struct {
		ca        *authority
		cert, key string
		tmpl      x509.Certificate
	}{
		{ca, ServingCert, ServingKey, x509.Certificate{
			Subject:     pkix.Name{CommonName: "kube-apiserver"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			DNSNames: []string{"localhost", "kubernetes", "kubernetes.default",
				"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}},
		{ca, AdminCert, AdminKey, x509.Certificate{
			Subject:     pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
		// The controller-manager and the kubelet stand-in are trusted test
		// infrastructure: they get cluster-admin through system:masters so
		// that no RBAC bootstrap ordering can slow the start down.
		{ca, ControllerCert, ControllerKey, x509.Certificate{
			Subject:     pkix.Name{CommonName: "system:kube-controller-manager", Organization: []string{"system:masters"}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
		{ca, KubeletCert, KubeletKey, x509.Certificate{
			Subject:     pkix.Name{CommonName: "testenv-kubelet", Organization: []string{"system:masters"}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
		// The API server's identity towards aggregated API servers, as in
		// kubeadm clusters (request-header authentication).
		{frontProxyCA, FrontProxyClientCert, FrontProxyClientKey, x509.Certificate{
			Subject:     pkix.Name{CommonName: FrontProxyClientName},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
	}
	for _, l := range leaves {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := l.tmpl
		tmpl.SerialNumber = serial()
		tmpl.NotBefore = now
		tmpl.NotAfter = now.Add(validity)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, l.ca.cert, &key.PublicKey, l.ca.key)
		if err != nil {
			return err
		}
		if err := writeCert(filepath.Join(dir, l.cert), der); err != nil {
			return err
		}
		if err := writeKey(filepath.Join(dir, l.key), key); err != nil {
			return err
		}
	}

	// Service-account tokens are signed with RSA (RS256), as kubeadm does.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, SAKey), saKey); err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, SAPub), "PUBLIC KEY", pubDER, 0o644)
}

type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newCA creates a self-signed CA and writes it to dir/certFile, dir/keyFile.
func newCA(dir, certFile, keyFile, commonName string, notBefore time.Time) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := writeCert(filepath.Join(dir, certFile), der); err != nil {
		return nil, err
	}
	if err := writeKey(filepath.Join(dir, keyFile), key); err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n.Add(n, big.NewInt(1))
}

func writeCert(path string, der []byte) error {
	return writePEM(path, "CERTIFICATE", der, 0o644)
}

// writeKey writes a private key as PKCS#8 ("PRIVATE KEY"), the encoding
// every client library reads (Go, rustls, OpenSSL).
func writeKey(path string, key any) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding key for %s: %w", path, err)
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}
