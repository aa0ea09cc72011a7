package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// FileInfo is one file or directory of an image.
type FileInfo struct {
	Path string `json:"path"`
	Mode string `json:"mode"`
	Size int64  `json:"size"`
	UID  int    `json:"uid"`
}

// Summary is what `imagebuild inspect` prints: enough to check an archive without a daemon.
type Summary struct {
	Tags         []string          `json:"tags"`
	ID           string            `json:"id"`
	Architecture string            `json:"architecture"`
	Created      string            `json:"created"`
	Entrypoint   []string          `json:"entrypoint"`
	Cmd          []string          `json:"cmd,omitempty"`
	User         string            `json:"user"`
	ExposedPorts []string          `json:"exposedPorts,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Files        []FileInfo        `json:"files"`
}

// Inspect reads a docker-archive written by Write.
func Inspect(file string) (Summary, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(file) }
	manifest, err := tarball.LoadManifest(opener)
	if err != nil {
		return Summary{}, fmt.Errorf("%s is not a docker-archive: %w", file, err)
	}
	if len(manifest) != 1 {
		return Summary{}, fmt.Errorf("%s holds %d images; expected one", file, len(manifest))
	}
	img, err := tarball.Image(opener, nil)
	if err != nil {
		return Summary{}, fmt.Errorf("reading the image in %s: %w", file, err)
	}
	id, err := img.ConfigName()
	if err != nil {
		return Summary{}, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return Summary{}, err
	}
	s := Summary{
		Tags:         manifest[0].RepoTags,
		ID:           id.String(),
		Architecture: cfg.Architecture,
		Created:      cfg.Created.UTC().Format(time.RFC3339),
		Entrypoint:   cfg.Config.Entrypoint,
		Cmd:          cfg.Config.Cmd,
		User:         cfg.Config.User,
		Labels:       cfg.Config.Labels,
	}
	for p := range cfg.Config.ExposedPorts {
		s.ExposedPorts = append(s.ExposedPorts, p)
	}
	sort.Strings(s.ExposedPorts)
	err = walkLayers(file, func(hdr *tar.Header, _ io.Reader) error {
		s.Files = append(s.Files, FileInfo{Path: "/" + strings.TrimSuffix(hdr.Name, "/"), Mode: fmt.Sprintf("%04o", hdr.Mode), Size: hdr.Size, UID: hdr.Uid})
		return nil
	})
	return s, err
}

// Extract unpacks the image's files into dir (for running its programs in a chroot).
func Extract(file, dir string) error {
	return walkLayers(file, func(hdr *tar.Header, r io.Reader) error {
		if !filepath.IsLocal(filepath.FromSlash(strings.TrimSuffix(hdr.Name, "/"))) {
			return fmt.Errorf("entry %q leaves the directory", hdr.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			return os.Chmod(target, os.FileMode(hdr.Mode)&os.ModePerm|modeBits(hdr.Mode))
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(hdr.Mode)&os.ModePerm)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, r)
			return errors.Join(err, out.Close())
		default:
			return fmt.Errorf("entry %q has type %c; images of this tool hold only files and directories", hdr.Name, hdr.Typeflag)
		}
	})
}

// modeBits keeps the sticky bit of a tar mode (a /tmp that anyone may write).
func modeBits(mode int64) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

// walkLayers calls fn for every entry of every layer of the archive, in order.
func walkLayers(file string, fn func(*tar.Header, io.Reader) error) error {
	img, err := tarball.Image(func() (io.ReadCloser, error) { return os.Open(file) }, nil)
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, layer := range layers {
		rc, err := layer.Uncompressed()
		if err != nil {
			return err
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				rc.Close()
				return err
			}
			if err := fn(hdr, tr); err != nil {
				rc.Close()
				return err
			}
		}
		rc.Close()
	}
	return nil
}
