package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// clientConfig is what `berth login` remembers: the server, how to trust
// it, who is logged in with which token, and the current project. It is
// kept in $BERTH_CONFIG or ~/.config/berth/config (mode 0600), as JSON;
// YAML written by hand is read too.
type clientConfig struct {
	Server                string `json:"server,omitempty"`
	CertificateAuthority  string `json:"certificateAuthority,omitempty"`
	InsecureSkipTLSVerify bool   `json:"insecureSkipTLSVerify,omitempty"`
	User                  string `json:"user,omitempty"`
	Token                 string `json:"token,omitempty"`
	Project               string `json:"project,omitempty"`

	path string
}

// configPath is where the configuration lives.
func configPath() (string, error) {
	if p := os.Getenv("BERTH_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the configuration directory (set BERTH_CONFIG): %w", err)
	}
	return filepath.Join(dir, "berth", "config"), nil
}

// loadConfig reads the configuration; a missing file is an empty one.
func loadConfig() (*clientConfig, error) {
	path, err := configPath()
	if err != nil {
		return nil, err
	}
	cfg := &clientConfig{path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	// JSON is YAML: one parser reads both.
	if err := yaml.Unmarshal(b, cfg); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	cfg.path = path
	return cfg, nil
}

// save writes the configuration atomically (a temporary file in the same
// directory, synced, then renamed over it), readable by its owner only:
// it holds a token.
func (c *clientConfig) save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	dir := filepath.Dir(c.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	f, err := os.CreateTemp(dir, ".config-*")
	if err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600 already; say so anyway, whatever the umask.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("save configuration: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("save configuration: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save configuration: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	committed = true
	return nil
}
