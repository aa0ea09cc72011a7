package netns

import (
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	p := Prefix("/tmp/env")
	if p != Prefix("/tmp/env") || p == Prefix("/tmp/env2") {
		t.Fatalf("prefix %q is not a stable function of the directory", p)
	}
	if !strings.HasPrefix(p, "lt-") || len(p) != len("lt-12345678-") {
		t.Fatalf("prefix %q", p)
	}
	// Every namespace of an environment starts with its prefix, so that
	// down finds them all, pods included.
	cluster := ClusterNamespace(p, "london")
	for _, n := range []string{WANNamespace(p), cluster, PodNamespace(cluster, "10.200.0.2")} {
		if !strings.HasPrefix(n, p) {
			t.Errorf("%q does not start with %q", n, p)
		}
	}
	if got := PodNamespace(cluster, "10.200.0.2"); got != cluster+"-pod-10-200-0-2" {
		t.Errorf("pod namespace %q", got)
	}
	// Interface names are at most 15 bytes.
	if v := podVeth("255.255.255.255"); len(v) > 15 || v != "vpffffffff" {
		t.Errorf("veth name %q", v)
	}
	if WANAddress(0) != "172.30.0.10" || WANAddress(1) != "172.30.0.11" {
		t.Errorf("WAN addresses %s, %s", WANAddress(0), WANAddress(1))
	}
}
