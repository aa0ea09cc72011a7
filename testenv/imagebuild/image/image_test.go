package image

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// trueSpec is an image of the build machine's /bin/true, a dynamically linked program.
func trueSpec() Spec {
	return Spec{
		Files:      []File{{Src: "/bin/true", Dest: "/usr/local/bin/true", Mode: 0o755}},
		WithLibs:   true,
		Entrypoint: []string{"/usr/local/bin/true"},
		Cmd:        []string{"--version"},
		User:       "65532:65532",
		Labels:     map[string]string{"org.opencontainers.image.title": "true"},
		Created:    time.Unix(0, 0),
	}
}

func buildTo(t *testing.T, spec Spec, file string) {
	t.Helper()
	img, err := Build(spec)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if err := Write(file, "liqo-test:dev", img); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestArchiveHoldsTheProgramItsLibrariesAndConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "true.tar")
	buildTo(t, trueSpec(), file)
	s, err := Inspect(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Tags) != 1 || s.Tags[0] != "liqo-test:dev" {
		t.Errorf("tags %v, want [liqo-test:dev]", s.Tags)
	}
	if strings.Join(s.Entrypoint, " ") != "/usr/local/bin/true" || strings.Join(s.Cmd, " ") != "--version" {
		t.Errorf("entrypoint %v cmd %v", s.Entrypoint, s.Cmd)
	}
	if s.User != "65532:65532" || s.Labels["org.opencontainers.image.title"] != "true" {
		t.Errorf("user %q labels %v", s.User, s.Labels)
	}
	paths := map[string]FileInfo{}
	for _, f := range s.Files {
		paths[f.Path] = f
	}
	for _, want := range []string{"/usr/local/bin/true", "/etc/passwd", "/etc/group", "/tmp"} {
		if _, ok := paths[want]; !ok {
			t.Errorf("%s missing from %v", want, s.Files)
		}
	}
	if paths["/tmp"].Mode != "1777" {
		t.Errorf("/tmp mode %s, want 1777", paths["/tmp"].Mode)
	}
	if paths["/home/nonroot"].UID != NonRootUID || paths["/usr/local/bin/true"].UID != 0 {
		t.Errorf("owners: /home/nonroot %d, the program %d", paths["/home/nonroot"].UID, paths["/usr/local/bin/true"].UID)
	}
	if s.Created != "1970-01-01T00:00:00Z" || s.Architecture != runtime.GOARCH {
		t.Errorf("created %s architecture %s", s.Created, s.Architecture)
	}
	libc := false
	for p := range paths {
		if strings.HasSuffix(p, "/libc.so.6") {
			libc = true
		}
	}
	if !libc {
		t.Errorf("libc.so.6 (needed by /bin/true) missing from %v", s.Files)
	}
}

func TestBuildsAreReproducible(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	buildTo(t, trueSpec(), a)
	buildTo(t, trueSpec(), b)
	x, errA := os.ReadFile(a)
	y, errB := os.ReadFile(b)
	if errA != nil || errB != nil || len(x) == 0 || !bytes.Equal(x, y) {
		t.Fatalf("two builds of the same spec differ (%v, %v)", errA, errB)
	}
	// ...and the creation time is the spec's, not the clock's.
	later := trueSpec()
	later.Created = time.Unix(86400, 0)
	c := filepath.Join(dir, "c.tar")
	buildTo(t, later, c)
	if s, err := Inspect(c); err != nil || s.Created != "1970-01-02T00:00:00Z" {
		t.Fatalf("created %+v %v", s.Created, err)
	}
}

func TestBadInputIsNamed(t *testing.T) {
	spec := trueSpec()
	spec.Files = []File{{Src: "/nonexistent/prog", Dest: "/prog", Mode: 0o755}}
	if _, err := Build(spec); err == nil || !strings.Contains(err.Error(), "/nonexistent/prog") {
		t.Errorf("missing source: %v", err)
	}
	spec = trueSpec()
	spec.Files[0].Dest = "relative/true"
	if _, err := Build(spec); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("relative destination: %v", err)
	}
	spec = trueSpec()
	spec.LibDirs = []string{t.TempDir()}
	if _, err := Build(spec); err == nil || !strings.Contains(err.Error(), "libc.so.6") {
		t.Errorf("library not found: %v", err)
	}
}

// The image is self-contained: its program runs in a chroot of the image's files alone, as
// the non-root user. Needs root (CI runs as root); fails, saying so, otherwise.
func TestTheProgramRunsFromTheImageAlone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (it runs the image's program in a chroot): run go test as root")
	}
	file := filepath.Join(t.TempDir(), "true.tar")
	buildTo(t, trueSpec(), file)
	root := t.TempDir()
	if err := Extract(file, root); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/local/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     root,
		Credential: &syscall.Credential{Uid: NonRootUID, Gid: NonRootUID},
	}
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("/usr/local/bin/true in the image's chroot: %v: %s", err, out)
	}
}
