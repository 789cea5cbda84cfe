package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Paths of the management API the CLI uses.
const (
	pathOAuthToken = "/oauth/token"
	pathMe         = "/apis/user.openshift.io/v1/users/~"
	pathTokens     = "/apis/oauth.openshift.io/v1/useroauthaccesstokens"
	pathProjects   = "/apis/project.openshift.io/v1/projects"
	pathRequests   = "/apis/project.openshift.io/v1/projectrequests"
)

type userObject struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Groups []string `json:"groups"`
}

func (c *apiClient) whoami(ctx context.Context) (string, error) {
	var u userObject
	if err := c.do(ctx, http.MethodGet, pathMe, nil, &u); err != nil {
		return "", err
	}
	return u.Metadata.Name, nil
}

func newLoginCommand() *cobra.Command {
	var user, password, token, caFile string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "login [URL]",
		Short: "Log in to a Berth server",
		Long: `Log in to a Berth server with a user name and password (asked for when -p is
absent), or with a token, and remember the server, the token and the current
project in $BERTH_CONFIG or ~/.config/berth/config (mode 0600).

The token is also a registry password:
  podman login -u any -p "$(berth whoami -t)" HOST`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			server := cfg.Server
			if len(args) == 1 {
				server = args[0]
			}
			if server == "" {
				return errors.New("which server? run berth login URL")
			}
			if server, err = normalizeServer(server); err != nil {
				return err
			}
			next := *cfg
			next.Server = server
			if server != cfg.Server || cmd.Flags().Changed("certificate-authority") || cmd.Flags().Changed("insecure-skip-tls-verify") {
				next.CertificateAuthority, next.InsecureSkipTLSVerify = "", insecure
				if caFile != "" {
					if next.CertificateAuthority, err = filepath.Abs(caFile); err != nil {
						return err
					}
				}
			}
			c, err := newAPIClient(&next)
			if err != nil {
				return err
			}
			c.token = ""
			ctx := cmd.Context()
			switch {
			case token != "" && (user != "" || password != ""):
				return errors.New("log in with --token or with -u and -p, not both")
			case token != "":
			default:
				if user == "" {
					return errors.New("who? pass -u USER (and -p PASSWORD, or type it when asked), or --token TOKEN")
				}
				if !cmd.Flags().Changed("password") {
					if password, err = readPassword(cmd); err != nil {
						return err
					}
				}
				if token, err = c.passwordGrant(ctx, user, password); err != nil {
					return fmt.Errorf("login failed: %w", err)
				}
			}
			c.token = token
			name, err := c.whoami(ctx)
			if err != nil {
				return fmt.Errorf("login failed: %w", err)
			}
			if next.Server != cfg.Server || next.User != name {
				next.Project = ""
			}
			next.User, next.Token = name, token
			next.Project = chooseProject(ctx, c, next.Project)
			if err := next.save(); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Logged into %s as %s\n", server, name)
			if next.Project != "" {
				fmt.Fprintf(out, "Using project %q.\n", next.Project)
			} else {
				fmt.Fprintln(out, "No current project: create one with berth new-project NAME, or choose one with berth project NAME.")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&user, "username", "u", "", "user name")
	f.StringVarP(&password, "password", "p", "", "password (asked for when absent)")
	f.StringVar(&token, "token", "", "log in with this token instead of a password")
	f.StringVar(&caFile, "certificate-authority", "", "CA certificate file the server's certificate is checked against (e.g. DATA/pki/ca.crt)")
	f.BoolVar(&insecure, "insecure-skip-tls-verify", false, "do not check the server's certificate (insecure)")
	return cmd
}

// chooseProject keeps the current project while the user still sees it;
// otherwise, when the user sees exactly one project, that one.
func chooseProject(ctx context.Context, c *apiClient, current string) string {
	if current != "" && c.do(ctx, http.MethodGet, pathProjects+"/"+url.PathEscape(current), nil, nil) == nil {
		return current
	}
	var list projectList
	if err := c.do(ctx, http.MethodGet, pathProjects, nil, &list); err == nil && len(list.Items) == 1 {
		return list.Items[0].Metadata.Name
	}
	return ""
}

// passwordGrant asks the OAuth endpoint for a token (RFC 6749 §4.3).
func (c *apiClient) passwordGrant(ctx context.Context, user, password string) (string, error) {
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.server+pathOAuthToken, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var answer struct {
		AccessToken string `json:"access_token"`
	}
	if err := c.send(req, &answer); err != nil {
		return "", err
	}
	if answer.AccessToken == "" {
		return "", errors.New("the server answered without a token")
	}
	return answer.AccessToken, nil
}

// readPassword prompts for a password on a terminal without echoing it;
// from anything else it reads one line.
func readPassword(cmd *cobra.Command) (string, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(cmd.ErrOrStderr(), "Password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password: pass -p PASSWORD or give it on standard input")
	}
	return line, nil
}

func newLogoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Revoke the current token and forget it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, c, err := session()
			if err != nil {
				return err
			}
			revokeErr := c.do(cmd.Context(), http.MethodDelete, pathTokens+"/~", nil, nil)
			if se, ok := errors.AsType[*statusError](revokeErr); ok && se.Code == http.StatusUnauthorized {
				revokeErr = nil // expired or revoked already: nothing left to revoke
			}
			user := cfg.User
			cfg.Token, cfg.User = "", ""
			if err := cfg.save(); err != nil {
				return err
			}
			if revokeErr != nil {
				return fmt.Errorf("the token was removed from %s, but the server did not revoke it: %w", cfg.path, revokeErr)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Logged %q out on %q\n", user, cfg.Server)
			return nil
		},
	}
}

func newWhoamiCommand() *cobra.Command {
	var showToken bool
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show the logged-in user (-t: the token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, c, err := session()
			if err != nil {
				return err
			}
			if showToken {
				fmt.Fprintln(cmd.OutOrStdout(), cfg.Token)
				return nil
			}
			name, err := c.whoami(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), name)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&showToken, "show-token", "t", false, "print the token instead of the user name")
	return cmd
}
