package install

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/execd/execd/internal/sandbox/dockerconfig"
)

// DaemonSettings is what the executor needs in docker's daemon.json.
type DaemonSettings struct {
	// RegistryMirrors are URLs for "registry-mirrors".
	RegistryMirrors []string
	// Runtimes are OCI runtimes for "runtimes", by name.
	Runtimes map[string]DaemonRuntime
}

// DaemonRuntime is an OCI runtime registered with docker.
type DaemonRuntime struct {
	Path        string   `json:"path"`
	RuntimeArgs []string `json:"runtimeArgs,omitempty"`
}

func (r DaemonRuntime) String() string {
	return strings.Join(append([]string{r.Path}, r.RuntimeArgs...), " ")
}

// Merged is the outcome of [MergeDaemonConfig].
type Merged struct {
	// Content is the new daemon.json; nil when nothing changes.
	Content []byte
	// Added and Present describe each wanted item ("the registry mirror
	// https://mirror.example.com"): written in Content, or there already.
	Added, Present []string
}

// MergeDaemonConfig merges want into existing, the content of a
// daemon.json (empty when there is none), keeping every other key:
// mirrors are added to "registry-mirrors" when missing (compared without
// a trailing slash), and each runtime replaces the one of its name.
func MergeDaemonConfig(existing []byte, want DaemonSettings) (Merged, error) {
	var m Merged
	cfg := map[string]any{}
	if len(bytes.TrimSpace(existing)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(existing))
		dec.UseNumber() // keep numbers as written
		if err := dec.Decode(&cfg); err != nil {
			return Merged{}, fmt.Errorf("it is not a JSON object: %w; fix it or move it away", err)
		}
	}

	if len(want.RegistryMirrors) > 0 {
		var mirrors []any
		if v, ok := cfg["registry-mirrors"]; ok {
			if mirrors, ok = v.([]any); !ok {
				return Merged{}, fmt.Errorf(`its "registry-mirrors" is not a list of URLs; fix it`)
			}
		}
		for _, mirror := range want.RegistryMirrors {
			if slices.ContainsFunc(mirrors, func(v any) bool { s, _ := v.(string); return sameURL(s, mirror) }) {
				m.Present = append(m.Present, "the registry mirror "+mirror)
				continue
			}
			mirrors = append(mirrors, mirror)
			m.Added = append(m.Added, "the registry mirror "+mirror)
		}
		cfg["registry-mirrors"] = mirrors

		// The executor also pulls <mirror host>/library/... itself
		// (internal/sandbox/docker), which dockerd does over HTTPS unless
		// the host is an insecure registry: an http:// mirror is one.
		var insecure []any
		if v, ok := cfg["insecure-registries"]; ok {
			if insecure, ok = v.([]any); !ok {
				return Merged{}, fmt.Errorf(`its "insecure-registries" is not a list of hosts; fix it`)
			}
		}
		for _, u := range want.RegistryMirrors {
			mirror, err := dockerconfig.ParseMirror(u)
			if err != nil || mirror.Scheme != "http" {
				continue
			}
			what := "the insecure registry " + mirror.Host + " (an http:// mirror)"
			if slices.ContainsFunc(insecure, func(v any) bool { s, _ := v.(string); return s == mirror.Host }) {
				m.Present = append(m.Present, what)
				continue
			}
			insecure = append(insecure, mirror.Host)
			m.Added = append(m.Added, what)
		}
		if len(insecure) > 0 {
			cfg["insecure-registries"] = insecure
		}
	}

	if len(want.Runtimes) > 0 {
		runtimes := map[string]any{}
		if v, ok := cfg["runtimes"]; ok {
			if runtimes, ok = v.(map[string]any); !ok {
				return Merged{}, fmt.Errorf(`its "runtimes" is not an object; fix it`)
			}
		}
		for _, name := range sortedKeys(want.Runtimes) {
			rt := want.Runtimes[name]
			var have DaemonRuntime
			if b, err := json.Marshal(runtimes[name]); err == nil {
				json.Unmarshal(b, &have) // a malformed entry is replaced
			}
			if have.Path == rt.Path && slices.Equal(have.RuntimeArgs, rt.RuntimeArgs) {
				m.Present = append(m.Present, fmt.Sprintf("the runtime %s (%s)", name, rt))
				continue
			}
			runtimes[name] = rt
			m.Added = append(m.Added, fmt.Sprintf("the runtime %s (%s)", name, rt))
		}
		cfg["runtimes"] = runtimes
	}

	if len(m.Added) == 0 {
		return m, nil
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cfg); err != nil {
		return Merged{}, err
	}
	m.Content = out.Bytes()
	return m, nil
}

// sameURL reports whether two registry URLs are the same, but for a
// trailing slash (docker adds one).
func sameURL(a, b string) bool {
	return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}

// CheckMirror reports whether dockerd accepts u as a registry mirror: a
// bad one stops dockerd from starting.
func CheckMirror(u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" ||
		(p.Path != "" && p.Path != "/") || p.RawQuery != "" || p.Fragment != "" || p.User != nil {
		return fmt.Errorf("registry mirror %q: want an http:// or https:// URL without credentials or path, e.g. https://mirror.example.com:5000", u)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
