package runner

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Versions names the code that produced a result: this module, Go, and the
// dependencies whose behaviour shapes a verdict.
func Versions() map[string]string {
	v := map[string]string{"go": runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v["lockcheck"] = info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			v["lockcheck"] += " " + s.Value
		}
	}
	for _, d := range info.Deps {
		if strings.Contains(d.Path, "porcupine") || strings.Contains(d.Path, "fake-gcs-server") ||
			strings.Contains(d.Path, "toxiproxy") || d.Path == "cloud.google.com/go/storage" ||
			strings.Contains(d.Path, "redis") || strings.Contains(d.Path, "redsync") || strings.Contains(d.Path, "redislock") {
			v[d.Path] = d.Version
		}
	}
	return v
}
