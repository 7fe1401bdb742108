// Package version reports which build of oxios is running.
package version

import (
	"runtime"
	"runtime/debug"

	"github.com/oxios/oxios/internal/oxios"
)

// Version is set at build time with -ldflags "-X github.com/oxios/oxios/internal/version.Version=v1.2.3".
var Version = "dev"

// Info describes this build.
type Info = oxios.VersionInfo

// Get returns this build's version, commit (from the Go build info when the
// binary was built in a git checkout), Go version and platform.
func Get() Info {
	info := Info{Version: Version, Commit: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
				if len(info.Commit) > 12 {
					info.Commit = info.Commit[:12]
				}
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && info.Commit != "unknown" {
			info.Commit += "-dirty"
		}
	}
	return info
}
