package cluster

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestIPAMAllocatesInOrderAndNeverTwice(t *testing.T) {
	a, err := newIPAM("10.200.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"10.200.0.2", "10.200.0.3", "10.200.0.4"} {
		got, err := a.allocate(types.UID(fmt.Sprint(i)))
		if err != nil || got != want {
			t.Fatalf("allocation %d: got %q, %v; want %q", i, got, err, want)
		}
	}
	// The same pod asks again: same address.
	if got, _ := a.allocate("1"); got != "10.200.0.3" {
		t.Fatalf("re-allocation for pod 1: got %s", got)
	}
	// A released address is not handed out again before the range wraps.
	a.release("0")
	if got, _ := a.allocate("3"); got != "10.200.0.5" {
		t.Fatalf("after release: got %s, want 10.200.0.5", got)
	}
}

func TestIPAMResumesAfterExistingPods(t *testing.T) {
	a, err := newIPAM("10.200.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	a.use("old", "10.200.1.7")
	if got, _ := a.allocate("new"); got != "10.200.1.8" {
		t.Fatalf("got %s, want 10.200.1.8", got)
	}
}

func TestIPAMWrapsAndExhausts(t *testing.T) {
	a, err := newIPAM("192.168.10.0/29") // .2 to .6 usable
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := range 5 {
		ip, err := a.allocate(types.UID(fmt.Sprint(i)))
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		got = append(got, ip)
	}
	if fmt.Sprint(got) != "[192.168.10.2 192.168.10.3 192.168.10.4 192.168.10.5 192.168.10.6]" {
		t.Fatalf("got %v", got)
	}
	if _, err := a.allocate("full"); err == nil {
		t.Fatal("allocation from a full range succeeded")
	}
	a.release("1")
	if ip, err := a.allocate("again"); err != nil || ip != "192.168.10.3" {
		t.Fatalf("after wrap: got %s, %v", ip, err)
	}
}

func TestIPAMv6(t *testing.T) {
	a, err := newIPAM("fd00:10::/64")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := a.allocate("a"); got != "fd00:10::2" {
		t.Fatalf("got %s", got)
	}
}
