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

// save writes the configuration atomically, readable by its owner only:
// it holds a token.
func (c *clientConfig) save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	if err := writeFileAtomic(c.path, b, nil); err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	return nil
}
