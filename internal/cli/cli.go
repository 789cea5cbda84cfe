// Package cli holds berth's commands.
package cli

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/logging"
	"github.com/berth-registry/berth/internal/server"
	"github.com/berth-registry/berth/internal/storage/drivers"
)

// Execute runs berth with os.Args and returns the process exit code.
func Execute() int {
	root := NewRoot()
	if err := root.Execute(); err != nil {
		if exit, ok := errors.AsType[*kubeExit](err); ok {
			// kubectl's messages say "error: …" or "Error from server …" already.
			if exit.msg != "" {
				fmt.Fprintln(os.Stderr, exit.msg)
			}
			return exit.code
		}
		fmt.Fprintln(os.Stderr, "berth:", err)
		return 1
	}
	return 0
}

// NewRoot builds the command tree.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "berth",
		Short:         "Berth, a self-hosted container image registry",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCommand(), newBenchCommand())
	root.AddCommand(newLoginCommand(), newLogoutCommand(), newWhoamiCommand(),
		newNewProjectCommand(), newProjectCommand(), newPolicyCommand(), newAdmCommand(),
		newTagCommand(), newRollbackCommand(), newImportImageCommand())
	addKubectlCommands(root)
	// Cobra adds its completion command when the root executes; added
	// now, it is a command group like the others.
	root.InitDefaultCompletionCmd()
	requireKnownSubcommands(root)
	return root
}

// requireKnownSubcommands makes every command group of the tree (a command
// with subcommands and no flags of its own, which can only pass its
// arguments on) refuse an argument that names none of its subcommands, in
// cobra's words, and show its help when given none. Cobra refuses unknown
// commands only at the root: `berth adm prune` printed the help of adm and
// succeeded, which hides a typo in a script.
func requireKnownSubcommands(c *cobra.Command) {
	if c.HasSubCommands() && !c.LocalNonPersistentFlags().HasFlags() {
		c.Args = knownSubcommand
		c.Run = nil
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	for _, sub := range c.Commands() {
		requireKnownSubcommands(sub)
	}
}

// knownSubcommand is the argument check of a command group: any argument
// left is a subcommand cobra did not find.
func knownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if suggestions := cmd.SuggestionsFor(args[0]); len(suggestions) > 0 && !cmd.DisableSuggestions {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(suggestions, "\n\t") + "\n"
	}
	return fmt.Errorf("%s\nRun '%s --help' for usage", msg, cmd.CommandPath())
}

// serveLogging sets up the server's logging: format to w and, beside it,
// to a ring the server keeps for its pod's log, at a level that can change
// while it runs.
func serveLogging(cfg *server.Config, w io.Writer, format, level string) error {
	lvl, err := logging.ParseLevel(level)
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	ring := logging.NewRing(logging.DefaultRingBytes, logging.DefaultRingLines)
	// The ring first: it never fails, and a broken stderr must not keep
	// lines from it.
	h, err := logging.NewHandler(io.MultiWriter(ring, w), format, lvl)
	if err != nil {
		return fmt.Errorf("--log-format: %w", err)
	}
	cfg.Logger, cfg.LogLevel, cfg.LogRing = slog.New(h), lvl, ring
	return nil
}

func newServeCommand() *cobra.Command {
	cfg := server.Config{}
	var logFormat, logLevel, configFile, emptyDirLimit string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the registry",
		Long: `Run the registry. By default it serves HTTPS on :5000 with a certificate from
a local CA it creates under DATA/pki (trust DATA/pki/ca.crt), and keeps blobs
and metadata under DATA.

On first start it creates the cluster administrator "admin", with the password
in $BERTH_ADMIN_PASSWORD or, when that is unset, a random one written to
DATA/admin-password.

Everything under DATA is private to the user berth runs as (files 0600,
directories 0700); modes left wider by an earlier version are tightened at
start, with a warning.

Secrets are encrypted at rest (AES-256-GCM) with the key in
DATA/secret-encryption.key, created on first start, or in the files
--secret-encryption-key-file names (or $BERTH_SECRET_ENCRYPTION_KEY_FILE;
32 bytes, mode 0600 or 0400, owned by the user berth runs as). Secrets stored
in plain text by an earlier version are encrypted at the first start.

Precedence: flags (and the --config file, which flags override) set what is
fixed for the life of the process (listen address, data directory, TLS,
keys, throttles, body pacing, upload caps) and the defaults of the registry
Config when it is first created (--storage: filesystem becomes pvc storage,
memory an emptyDir). After that the Config
(configs.imageregistry.operator.openshift.io/cluster) is the source of truth
for what it holds (storage, readOnly, request limits, log level, routes, ...),
and changes to it apply live: see docs/OPERATOR.md.

Prometheus metrics are served at /extensions/v2/metrics to users granted get on
registry/metrics (cluster administrators are) and, when --metrics-secret (or
$BERTH_METRICS_SECRET) is set, to anyone presenting that secret: curl -u
anything:SECRET URL/extensions/v2/metrics. See docs/METRICS.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile != "" {
				if err := applyServeConfig(cmd.Flags(), configFile); err != nil {
					return err
				}
			}
			cfg.LogLevelGiven = cmd.Flags().Changed("log-level")
			if err := serveLogging(&cfg, cmd.ErrOrStderr(), logFormat, logLevel); err != nil {
				return err
			}
			cfg.AdminPassword = os.Getenv("BERTH_ADMIN_PASSWORD")
			if !cmd.Flags().Changed("secret-encryption-key-file") {
				if f := os.Getenv("BERTH_SECRET_ENCRYPTION_KEY_FILE"); f != "" {
					cfg.SecretKeyFiles = []string{f}
				}
				if k := os.Getenv("BERTH_SECRET_ENCRYPTION_KEY"); k != "" {
					if len(cfg.SecretKeyFiles) > 0 {
						return errors.New("$BERTH_SECRET_ENCRYPTION_KEY and a key file ($BERTH_SECRET_ENCRYPTION_KEY_FILE or the --config file) are both given: give one")
					}
					key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
					if err != nil {
						return fmt.Errorf("$BERTH_SECRET_ENCRYPTION_KEY: not base64: %w", err)
					}
					cfg.SecretKey = key
				}
			}
			if !cmd.Flags().Changed("metrics-secret") {
				cfg.MetricsSecret = os.Getenv("BERTH_METRICS_SECRET")
			}
			if !cmd.Flags().Changed("store") {
				if dsn := os.Getenv("BERTH_STORE_DSN"); dsn != "" {
					cfg.Store = dsn
				}
			}
			if emptyDirLimit != "" {
				limit, err := parseEmptyDirLimit(emptyDirLimit)
				if err != nil {
					return err
				}
				cfg.EmptyDirSizeLimit = limit
			}
			restrictUmask()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return server.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", ":5000", "address to listen on")
	f.StringVar(&cfg.DataDir, "data", "./berth-data", "data directory (blobs, metadata, pki)")
	f.StringVar(&cfg.Store, "store", "", "metadata store: empty for SQLite in the data directory (one process), or postgres://USER@HOST/DB (several instances may share it; $BERTH_STORE_DSN, or a --config file, keeps its password out of ps)")
	f.DurationVar(&cfg.JobLeaseTTL, "job-lease", 30*time.Second, "how long a background job's lease (webhook delivery, scheduled import, the janitor) outlives its holder's last renewal; with a shared --store, another instance takes over a dead one's jobs after about this long")
	f.StringVar(&cfg.Storage, "storage", "filesystem", "blob storage: "+strings.Join(drivers.Builtin().Names(), "|")+" (memory keeps nothing across restarts); "+
		"the registry Config is created with it (filesystem: pvc, the default volume; memory: emptyDir), then its spec.storage decides, live")
	f.BoolVar(&cfg.InsecureHTTP, "insecure-http", false, "serve plain HTTP instead of TLS")
	f.StringSliceVar(&cfg.TLSHosts, "tls-host", nil, "extra host name or IP the serving certificate covers (repeatable)")
	f.StringVar(&cfg.BaseDomain, "base-domain", "", "domain of the registry Config's route hosts: the default route is default-route-openshift-image-registry.DOMAIN, a route without hostname NAME-openshift-image-registry.DOMAIN (default: the default route is localhost, other routes under localhost)")
	f.BoolVar(&cfg.AllowSparse, "allow-sparse-manifests", false, "accept manifests whose layers or child manifests are not in the repository")
	f.Int64Var(&cfg.MaxManifestBytes, "max-manifest-bytes", 4<<20, "largest manifest accepted")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 0, "grace period for in-flight requests on SIGTERM (default 30s)")
	f.DurationVar(&cfg.ShutdownDelay, "shutdown-delay", 0, "on SIGTERM, keep serving this long with /readyz answering 503 before the listener closes, so load balancers stop sending requests first")
	f.StringVar(&cfg.DebugListen, "debug-listen", "", "serve the Go profiler (/debug/pprof/) on this address, e.g. 127.0.0.1:6060")
	f.StringVar(&cfg.Htpasswd, "htpasswd", "", "htpasswd file (bcrypt, htpasswd -B) of users who may log in; re-read when it changes")
	f.IntVar(&cfg.LoginAttempts, "login-attempts", 5, "failed logins of one user within --login-window before a lockout (a client gets 4x as many)")
	f.DurationVar(&cfg.LoginWindow, "login-window", 5*time.Minute, "window in which failed logins are counted")
	f.DurationVar(&cfg.LoginLockout, "login-lockout", time.Minute, "first lockout after too many failed logins; doubles with each lockout in a row")
	f.DurationVar(&cfg.RegistryTokenTTL, "registry-token-ttl", time.Hour, "life of a token /openshift/token issues for a user name and password")
	f.DurationVar(&cfg.BodyTimeout, "body-timeout", 30*time.Second, "a request body, and a response, must move --body-min-rate bytes per second over each such period or the connection is cut (an upload session keeps what arrived); negative: no limit")
	f.Int64Var(&cfg.BodyMinRate, "body-min-rate", 1024, "least average rate, in bytes per second, of a request body or a response over each --body-timeout")
	f.IntVar(&cfg.MaxUploadsPerUser, "max-uploads-per-user", 500, "open upload sessions one user may have (0: no cap)")
	f.IntVar(&cfg.MaxUploadsPerProject, "max-uploads-per-project", 2000, "open upload sessions one project may have (0: no cap)")
	f.IntVar(&cfg.MaxImagesBulkImported, "max-images-bulk-imported", 50, "tags one repository import (berth import-image --all) takes at most; the rest are reported (-1: no cap)")
	f.DurationVar(&cfg.GCInterval, "gc-interval", time.Hour, "how often garbage collection deletes unreferenced blobs and manifests in the background (one instance at a time, under a lease; negative: never, berth adm gc only)")
	f.DurationVar(&cfg.AuditRetention, "audit-retention", 90*24*time.Hour, "how long rows of the audit log (pushes, pulls, deletions, access changes) are kept")
	f.DurationVar(&cfg.GCGrace, "gc-grace", 24*time.Hour, "how long an unreferenced blob or manifest is kept after it was last pushed, linked or uploaded: longer than any push takes from its first layer to its manifest")
	f.DurationVar(&cfg.ScheduledImportInterval, "scheduled-import-interval", 15*time.Minute, "how often tags imported with --scheduled are imported again")
	f.StringArrayVar(&cfg.SecretKeyFiles, "secret-encryption-key-file", nil,
		"file of the 32-byte key that encrypts Secrets at rest, mode 0600 or 0400 ($BERTH_SECRET_ENCRYPTION_KEY_FILE, or the key itself in base64 in $BERTH_SECRET_ENCRYPTION_KEY; default DATA/secret-encryption.key, created on first start); repeat to rotate: the first encrypts, all decrypt")
	f.StringVar(&cfg.MetricsSecret, "metrics-secret", "",
		"secret that reads the metrics at /extensions/v2/metrics as a Basic password (any user name) or a bearer token, at least 16 characters; prefer $BERTH_METRICS_SECRET or a --config file, which other users cannot see in ps (without it: users granted get on registry/metrics)")
	f.StringVar(&logFormat, "log-format", "logfmt", "log format: logfmt|json (text is logfmt)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug|info|warn|error")
	f.StringVar(&emptyDirLimit, "emptydir-size-limit", "", "most memory an emptyDir storage holds, as a Kubernetes quantity (512Mi, 4Gi); an upload past it gets 507 (default: half the machine's memory; 0: no limit)")
	f.StringVar(&configFile, "config", "", "YAML or JSON file of settings, keyed by flag name (e.g. htpasswd: /etc/berth/users); flags given on the command line win")
	cmd.Long += "\n\nSettings a --config file may hold: " + configFlagHelp(f) + "."
	return cmd
}
