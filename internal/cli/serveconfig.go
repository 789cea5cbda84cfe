package cli

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// applyServeConfig reads a `berth serve --config` file — YAML or JSON
// whose keys are the flag names (`listen: :5000`, `htpasswd: /etc/berth/users`,
// `login-lockout: 2m`, `tls-host: [a, b]`) — and sets every flag the
// command line did not: the command line wins. An unknown key is an
// error naming it, so a typo does not pass silently.
func applyServeConfig(flags *pflag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var settings map[string]any
	if err := yaml.Unmarshal(b, &settings); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		f := flags.Lookup(key)
		if f == nil || key == "config" {
			return fmt.Errorf("--config %s: unknown setting %q (settings are the flags of berth serve)", path, key)
		}
		if f.Changed {
			continue
		}
		values := []any{settings[key]}
		if list, ok := settings[key].([]any); ok {
			values = list
		}
		for _, v := range values {
			s := fmt.Sprint(v)
			if f, ok := v.(float64); ok && f == float64(int64(f)) {
				s = fmt.Sprint(int64(f)) // YAML numbers arrive as float64
			}
			if err := flags.Set(key, s); err != nil {
				return fmt.Errorf("--config %s: %s: %w", path, key, err)
			}
		}
	}
	return nil
}

// configFlagHelp names the settings a config file may hold.
func configFlagHelp(flags *pflag.FlagSet) string {
	var names []string
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Name != "config" {
			names = append(names, f.Name)
		}
	})
	return strings.Join(names, ", ")
}

// parseEmptyDirLimit reads --emptydir-size-limit, a Kubernetes quantity
// as an emptyDir volume's sizeLimit is: 0 means no limit (the server's
// negative).
func parseEmptyDirLimit(s string) (int64, error) {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, fmt.Errorf("--emptydir-size-limit %q: %w (a quantity such as 512Mi or 4Gi)", s, err)
	}
	n, ok := q.AsInt64()
	if !ok || n < 0 {
		return 0, fmt.Errorf("--emptydir-size-limit %q: not a whole, non-negative number of bytes", s)
	}
	if n == 0 {
		return -1, nil
	}
	return n, nil
}
