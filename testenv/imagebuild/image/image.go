// Package image builds container images without a daemon: one layer holding the given files
// (and, for dynamically linked programs, the shared libraries they load), a minimal /etc for a
// non-root user, and an image config (entrypoint, user, labels). The result is written as a
// docker-archive, the format `docker load`, `kind load image-archive` and `ctr images import`
// accept.
//
// Builds are reproducible: the same inputs give the same image digest (entries sorted, owners
// and times fixed, the creation time taken from the spec).
package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// NonRootUID is the user images run as: distroless's "nonroot", the uid deploy/ expects.
const NonRootUID = 65532

// File is one file copied from the build machine into the image.
type File struct {
	// Src is the path on the build machine.
	Src string
	// Dest is the absolute path in the image.
	Dest string
	// Mode is the permission bits in the image (0755 for programs).
	Mode int64
}

// Spec says what goes into an image.
type Spec struct {
	// Files copied into the image.
	Files []File
	// WithLibs adds, for every dynamically linked ELF file, its program interpreter and the
	// shared libraries it needs (recursively), found in LibDirs, at the same paths.
	WithLibs bool
	// LibDirs are searched, in order, for the shared libraries (DefaultLibDirs when empty).
	LibDirs []string
	// Entrypoint, Cmd, Env, WorkingDir, User and ExposedPorts go into the image config.
	Entrypoint   []string
	Cmd          []string
	Env          []string
	WorkingDir   string
	User         string
	ExposedPorts []string
	// Labels of the image config (org.opencontainers.image.*).
	Labels map[string]string
	// Created is the image's creation time (fixed for reproducible builds).
	Created time.Time
}

// DefaultLibDirs are where Debian keeps the C library and its friends.
var DefaultLibDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// entry is one tar entry of the layer.
type entry struct {
	mode    int64
	dir     bool
	content []byte
	// owner is the uid and gid (root unless said otherwise).
	owner int
}

// Build makes the image described by spec.
func Build(spec Spec) (v1.Image, error) {
	entries := map[string]entry{}
	addBaseFiles(entries)
	for _, f := range spec.Files {
		if !path.IsAbs(f.Dest) {
			return nil, fmt.Errorf("destination %q of %s is not an absolute path", f.Dest, f.Src)
		}
		content, err := os.ReadFile(f.Src)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", f.Src, err)
		}
		entries[path.Clean(f.Dest)] = entry{mode: f.Mode, content: content}
		if spec.WithLibs {
			dirs := spec.LibDirs
			if len(dirs) == 0 {
				dirs = DefaultLibDirs
			}
			if err := addLibraries(entries, f.Src, dirs); err != nil {
				return nil, err
			}
		}
	}
	layerBytes, err := layerTar(entries)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("making the layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("adding the layer: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture = runtime.GOARCH
	cfg.OS = "linux"
	cfg.Created = v1.Time{Time: spec.Created.UTC()}
	cfg.Config.Entrypoint = spec.Entrypoint
	cfg.Config.Cmd = spec.Cmd
	cfg.Config.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, spec.Env...)
	cfg.Config.WorkingDir = spec.WorkingDir
	cfg.Config.User = spec.User
	cfg.Config.Labels = spec.Labels
	if len(spec.ExposedPorts) > 0 {
		cfg.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range spec.ExposedPorts {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			cfg.Config.ExposedPorts[p] = struct{}{}
		}
	}
	cfg.History = []v1.History{{Created: cfg.Created, CreatedBy: "liqo imagebuild", Comment: "one layer: the program, its libraries, a minimal /etc"}}
	return mutate.ConfigFile(img, cfg)
}

// Write writes img as a docker-archive at file, tagged tag (for example liqo-host:dev).
func Write(file, tag string, img v1.Image) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("tag %q: %w", tag, err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return os.Rename(tmp, file)
}

// addBaseFiles adds what a program run as a non-root user expects: /etc/passwd and /etc/group
// naming root and nonroot, a writable /tmp, and the CA certificates of the build machine when
// it has them (for HTTPS downloads of user plugins).
func addBaseFiles(entries map[string]entry) {
	entries["/etc/passwd"] = entry{mode: 0o644, content: []byte(fmt.Sprintf(
		"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n",
		NonRootUID, NonRootUID))}
	entries["/etc/group"] = entry{mode: 0o644, content: []byte(fmt.Sprintf(
		"root:x:0:\nnonroot:x:%d:\n", NonRootUID))}
	entries["/tmp"] = entry{mode: 0o1777, dir: true}
	entries["/home/nonroot"] = entry{mode: 0o755, dir: true, owner: NonRootUID}
	if certs, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		entries["/etc/ssl/certs/ca-certificates.crt"] = entry{mode: 0o644, content: certs}
	}
}

// addLibraries adds the program interpreter and the needed shared libraries of the ELF file
// src (nothing for a static program or a file that is not ELF), recursively.
func addLibraries(entries map[string]entry, src string, dirs []string) error {
	queue := []string{src}
	seen := map[string]bool{}
	for len(queue) > 0 {
		file := queue[0]
		queue = queue[1:]
		interp, needed, err := dynamicDeps(file)
		if err != nil {
			return err
		}
		if interp != "" && !seen[interp] {
			seen[interp] = true
			if err := addHostFile(entries, interp, interp); err != nil {
				return fmt.Errorf("program interpreter of %s: %w", file, err)
			}
		}
		for _, lib := range needed {
			if seen[lib] {
				continue
			}
			seen[lib] = true
			found := ""
			for _, dir := range dirs {
				if sameMachine(file, filepath.Join(dir, lib)) {
					found = filepath.Join(dir, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s, which is in none of %s", file, lib, strings.Join(dirs, ", "))
			}
			if err := addHostFile(entries, found, found); err != nil {
				return err
			}
			queue = append(queue, found)
		}
	}
	return nil
}

// addHostFile copies the file at src (following symbolic links) to dest in the image.
func addHostFile(entries map[string]entry, src, dest string) error {
	content, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("reading %s: %w", src, err)
	}
	entries[path.Clean(dest)] = entry{mode: 0o755, content: content}
	return nil
}

// dynamicDeps reads the program interpreter and DT_NEEDED entries of an ELF file; a file that
// is not ELF has none.
func dynamicDeps(file string) (string, []string, error) {
	f, err := elf.Open(file)
	if err != nil {
		if _, isFormat := err.(*elf.FormatError); isFormat {
			return "", nil, nil
		}
		return "", nil, fmt.Errorf("reading %s: %w", file, err)
	}
	defer f.Close()
	interp := ""
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			raw, err := io.ReadAll(p.Open())
			if err != nil {
				return "", nil, fmt.Errorf("reading the interpreter of %s: %w", file, err)
			}
			interp = strings.TrimRight(string(raw), "\x00")
		}
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return "", nil, fmt.Errorf("reading the libraries of %s: %w", file, err)
	}
	return interp, needed, nil
}

// layerTar writes the entries as a tar stream: parent directories made explicit, paths
// sorted, owner root, times zero, so the same entries always give the same bytes.
func layerTar(entries map[string]entry) ([]byte, error) {
	all := map[string]entry{}
	for p, e := range entries {
		all[p] = e
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if _, ok := all[dir]; !ok {
				all[dir] = entry{mode: 0o755, dir: true}
			}
		}
	}
	paths := make([]string, 0, len(all))
	for p := range all {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	for _, p := range paths {
		e := all[p]
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Mode:    e.mode,
			Uid:     e.owner,
			Gid:     e.owner,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		if e.dir {
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(e.content))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if !e.dir {
			if _, err := tw.Write(e.content); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sameMachine tells whether candidate exists and is an ELF file for the same machine and class
// as file (a multiarch host keeps an aarch64 libc.so.6 beside the x86_64 one).
func sameMachine(file, candidate string) bool {
	a, err := elf.Open(file)
	if err != nil {
		return false
	}
	defer a.Close()
	b, err := elf.Open(candidate)
	if err != nil {
		return false
	}
	defer b.Close()
	return a.Machine == b.Machine && a.Class == b.Class
}
