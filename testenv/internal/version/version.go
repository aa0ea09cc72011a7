// Package version makes the embedded Kubernetes components report the real
// Kubernetes version they were built from.
//
// Upstream release builds stamp k8s.io/component-base/version with -ldflags
// -X. This binary is built with a plain `go build`, which would leave the
// placeholder "v0.0.0-master+$Format:%H$" (shown by `kubectl version`, the
// /version endpoint and Node.status.nodeInfo). Set reads the version of the
// k8s.io/kubernetes module from the build info and writes it into the same
// variables -ldflags would have set.
package version

import (
	"runtime/debug"
	"strconv"
	_ "unsafe" // for go:linkname

	utilversion "k8s.io/apimachinery/pkg/util/version"
	componentversion "k8s.io/component-base/version"
)

//go:linkname gitMajor k8s.io/component-base/version.gitMajor
var gitMajor string

//go:linkname gitMinor k8s.io/component-base/version.gitMinor
var gitMinor string

//go:linkname gitVersion k8s.io/component-base/version.gitVersion
var gitVersion string

//go:linkname gitTreeState k8s.io/component-base/version.gitTreeState
var gitTreeState string

// fallback is used when the binary carries no module build info (go run of
// a single file, stripped builds).
const fallback = "v1.34.4"

// Kubernetes returns the k8s.io/kubernetes module version this binary was
// built against, e.g. "v1.34.4".
func Kubernetes() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "k8s.io/kubernetes" {
				if dep.Replace != nil && dep.Replace.Version != "" {
					return dep.Replace.Version
				}
				return dep.Version
			}
		}
	}
	return fallback
}

// Set stamps the component-base version variables. Call it before any
// component reads them (first thing in main).
func Set() {
	v := Kubernetes()
	parsed, err := utilversion.ParseSemantic(v)
	if err != nil {
		return
	}
	gitVersion = v
	gitMajor = strconv.FormatUint(uint64(parsed.Major()), 10)
	gitMinor = strconv.FormatUint(uint64(parsed.Minor()), 10)
	gitTreeState = "clean"
	_ = componentversion.SetDynamicVersion(v)
}
