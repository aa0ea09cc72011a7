package cluster

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func flightsPod(command []string, env []corev1.EnvVar) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "flights-1", Namespace: "demo"},
		Spec: corev1.PodSpec{NodeName: "london-node", Containers: []corev1.Container{{
			Name:    "flights",
			Command: command,
			Env:     env,
			Ports:   []corev1.ContainerPort{{ContainerPort: 7999}},
		}}},
	}
}

func TestPodBinary(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "flights-service"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "not-executable"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	n := &podNetwork{binDir: dir}
	for _, tc := range []struct {
		command []string
		want    string
	}{
		{[]string{"flights-service", "--verbose"}, filepath.Join(dir, "flights-service")},
		{[]string{"/usr/local/bin/flights-service"}, filepath.Join(dir, "flights-service")}, // base name
		{[]string{"not-executable"}, ""},
		{[]string{"nginx"}, ""},
		{nil, ""},
	} {
		if got := n.binary(flightsPod(tc.command, nil)); got != tc.want {
			t.Errorf("command %q: binary %q, want %q", tc.command, got, tc.want)
		}
	}
	hostNet := flightsPod([]string{"flights-service"}, nil)
	hostNet.Spec.HostNetwork = true
	if got := n.binary(hostNet); got != "" {
		t.Errorf("hostNetwork pod runs %q; want no process", got)
	}
	var off *podNetwork // outside network mode
	if got := off.binary(flightsPod([]string{"flights-service"}, nil)); got != "" {
		t.Errorf("outside network mode: binary %q", got)
	}
}

func TestPodEnv(t *testing.T) {
	n := &podNetwork{hostIP: "172.30.0.10"}
	pod := flightsPod([]string{"flights-service"}, []corev1.EnvVar{
		{Name: "GREETING", Value: "hello"},
		{Name: "PORT", Value: "7998"}, // the container's own value wins
		{Name: "MY_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		{Name: "SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}}},
	})
	env := n.env(pod, "10.200.0.2")
	for _, want := range []string{
		"POD_IP=10.200.0.2", "POD_NAME=flights-1", "POD_NAMESPACE=demo",
		"GREETING=hello", "PORT=7998", "MY_IP=10.200.0.2", "NODE=london-node",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s: %q", want, env)
		}
	}
	for _, kv := range env {
		if kv == "PORT=7999" || len(kv) >= 7 && kv[:7] == "SECRET=" {
			t.Errorf("unexpected %s in %q", kv, env)
		}
	}
}
