package cli

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"k8s.io/kubectl/pkg/cmd/annotate"
	"k8s.io/kubectl/pkg/cmd/apiresources"
	"k8s.io/kubectl/pkg/cmd/apply"
	kauth "k8s.io/kubectl/pkg/cmd/auth"
	"k8s.io/kubectl/pkg/cmd/create"
	"k8s.io/kubectl/pkg/cmd/delete"
	"k8s.io/kubectl/pkg/cmd/describe"
	"k8s.io/kubectl/pkg/cmd/edit"
	"k8s.io/kubectl/pkg/cmd/explain"
	"k8s.io/kubectl/pkg/cmd/get"
	"k8s.io/kubectl/pkg/cmd/label"
	"k8s.io/kubectl/pkg/cmd/logs"
	"k8s.io/kubectl/pkg/cmd/patch"
	"k8s.io/kubectl/pkg/cmd/replace"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	kdescribe "k8s.io/kubectl/pkg/describe"
)

// The generic verbs (get, describe, create, apply, patch, replace, edit,
// delete, label, annotate, explain, api-resources, logs) are kubectl's own
// commands from k8s.io/kubectl, as the reference platform's CLI embeds them:
// the same flags, output and messages. Berth supplies the session (server,
// token, trust and current project from `berth login`) and turns kubectl's
// exit-on-error into an ordinary error.

// kubeSession is kubectl's RESTClientGetter over Berth's client
// configuration, read on first use so that `berth get --help` works
// without a login.
type kubeSession struct {
	namespace string    // -n
	errOut    io.Writer // where the warning about plain HTTP goes

	once       sync.Once
	warnOnce   sync.Once
	cfg        *clientConfig
	err        error
	discovery  discovery.CachedDiscoveryInterface
	restMapper meta.RESTMapper
}

var _ genericclioptions.RESTClientGetter = (*kubeSession)(nil)

func (s *kubeSession) load() (*clientConfig, error) {
	s.once.Do(func() {
		s.cfg, s.err = loadConfig()
		if s.err == nil && (s.cfg.Server == "" || s.cfg.Token == "") {
			s.err = errNotLoggedIn
		}
	})
	return s.cfg, s.err
}

// ToRawKubeConfigLoader presents the berth configuration as a kubeconfig
// with one context; -n overrides its namespace, the current project.
func (s *kubeSession) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	cfg, err := s.load()
	if err != nil {
		return failingClientConfig{err}
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["berth"] = &clientcmdapi.Cluster{
		Server:                cfg.Server,
		CertificateAuthority:  cfg.CertificateAuthority,
		InsecureSkipTLSVerify: cfg.InsecureSkipTLSVerify,
	}
	kc.AuthInfos["berth"] = &clientcmdapi.AuthInfo{Token: cfg.Token}
	kc.Contexts["berth"] = &clientcmdapi.Context{Cluster: "berth", AuthInfo: "berth", Namespace: cfg.Project}
	kc.CurrentContext = "berth"
	overrides := &clientcmd.ConfigOverrides{}
	overrides.Context.Namespace = s.namespace
	return clientcmd.NewDefaultClientConfig(*kc, overrides)
}

func (s *kubeSession) ToRESTConfig() (*rest.Config, error) {
	rc, err := s.ToRawKubeConfigLoader().ClientConfig()
	if err != nil {
		return nil, err
	}
	// clientcmd copies the user's credentials only for a TLS server, so
	// against `berth serve --insecure-http` every verb was Unauthorized
	// after a good login. Berth's own verbs send the token there too.
	if !rest.IsConfigTransportTLS(*rc) {
		cfg, err := s.load()
		if err != nil {
			return nil, err
		}
		rc.BearerToken = cfg.Token
		s.warnOnce.Do(func() { warnPlainHTTP(s.errOut, cfg.Server) })
	}
	rc.UserAgent = "berth"
	return rc, nil
}

// warnPlainHTTP says that the token goes unencrypted to server, unless
// server is this machine.
func warnPlainHTTP(w io.Writer, server string) {
	u, err := url.Parse(server)
	if err != nil || isLoopbackHost(u.Hostname()) {
		return
	}
	if w == nil {
		w = os.Stderr
	}
	fmt.Fprintf(w, "warning: %s is plain HTTP: the token is sent unencrypted to %s\n", server, u.Host)
}

// isLoopbackHost reports whether host (a name or an address) is this
// machine: localhost, 127.0.0.0/8 or ::1.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ToDiscoveryClient caches discovery for the life of one command, not on
// disk as kubectl does: a berth command is one short conversation and a
// stale disk cache would hide resources a newer server serves.
func (s *kubeSession) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	if s.discovery != nil {
		return s.discovery, nil
	}
	rc, err := s.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, err
	}
	s.discovery = memory.NewMemCacheClient(dc)
	return s.discovery, nil
}

func (s *kubeSession) ToRESTMapper() (meta.RESTMapper, error) {
	if s.restMapper != nil {
		return s.restMapper, nil
	}
	dc, err := s.ToDiscoveryClient()
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(dc)
	s.restMapper = restmapper.NewShortcutExpander(mapper, dc, nil)
	return s.restMapper, nil
}

// failingClientConfig answers every question with the error that kept the
// configuration from loading (not logged in, unreadable file).
type failingClientConfig struct{ err error }

func (f failingClientConfig) RawConfig() (clientcmdapi.Config, error) {
	return clientcmdapi.Config{}, f.err
}
func (f failingClientConfig) ClientConfig() (*rest.Config, error)  { return nil, f.err }
func (f failingClientConfig) Namespace() (string, bool, error)     { return "", false, f.err }
func (f failingClientConfig) ConfigAccess() clientcmd.ConfigAccess { return nil }
func (f failingClientConfig) MergedRawConfig() (clientcmdapi.Config, error) {
	return clientcmdapi.Config{}, f.err
}

// kubeExit is kubectl's fatal error (its message is already formatted, as
// "Error from server (NotFound): …" or "error: …"), returned instead of
// exiting the process.
type kubeExit struct {
	msg  string
	code int
}

func (e *kubeExit) Error() string { return e.msg }

var kubeSetup sync.Once

func setupKubectl() {
	kubeSetup.Do(func() {
		cmdutil.BehaviorOnFatal(func(msg string, code int) {
			panic(&kubeExit{msg: strings.TrimSuffix(msg, "\n"), code: code})
		})
		kdescribe.DescriberFn = describerFor
		// kubectl's internals log through klog ("Couldn't get current
		// server API group list" before every 401); the error that follows
		// says it once. The server's warnings are printed as kubectl does.
		klog.SetLogger(logr.Discard())
		rest.SetDefaultWarningHandler(rest.NewWarningWriter(os.Stderr, rest.WarningWriterOptions{Deduplicate: true}))
	})
}

// lazyWriter writes to whatever the root command's output is when the
// command runs: kubectl's commands take their streams when built, and
// tests set them afterwards.
type lazyWriter func() io.Writer

func (w lazyWriter) Write(p []byte) (int, error) { return w().Write(p) }

type lazyReader func() io.Reader

func (r lazyReader) Read(p []byte) (int, error) { return r().Read(p) }

// addKubectlCommands adds kubectl's generic verbs to root.
func addKubectlCommands(root *cobra.Command) {
	setupKubectl()
	streams := genericiooptions.IOStreams{
		In:     lazyReader(func() io.Reader { return root.InOrStdin() }),
		Out:    lazyWriter(func() io.Writer { return root.OutOrStdout() }),
		ErrOut: lazyWriter(func() io.Writer { return root.ErrOrStderr() }),
	}
	session := &kubeSession{errOut: streams.ErrOut}
	f := cmdutil.NewFactory(session)
	cmds := []*cobra.Command{
		get.NewCmdGet("berth", f, streams),
		describe.NewCmdDescribe("berth", f, streams),
		create.NewCmdCreate(f, streams),
		apply.NewCmdApply("berth", f, streams),
		patch.NewCmdPatch(f, streams),
		replace.NewCmdReplace(f, streams),
		edit.NewCmdEdit(f, streams),
		delete.NewCmdDelete(f, streams),
		label.NewCmdLabel(f, streams),
		annotate.NewCmdAnnotate("berth", f, streams),
		explain.NewCmdExplain("berth", f, streams),
		apiresources.NewCmdAPIResources(f, streams),
		logs.NewCmdLogs(f, streams),
		authCommand(f, streams),
	}
	for _, c := range cmds {
		if c.Name() == "delete" {
			forgetDeletedProject(c, session)
		}
		c.PersistentFlags().StringVarP(&session.namespace, "namespace", "n", "", "project to act in (default: the current project)")
		returnErrors(c, session)
		root.AddCommand(c)
	}
}

// authCommand is kubectl's auth with can-i, the subcommand Berth serves
// (SelfSubjectAccessReview).
func authCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	c := &cobra.Command{Use: "auth", Short: "Inspect authorization (can-i)"}
	c.AddCommand(kauth.NewCmdCanI(f, streams))
	return c
}

// returnErrors makes every command of the tree return kubectl's fatal
// error instead of exiting, with a hint of what to do where Berth knows
// one, and shows its examples with berth.
func returnErrors(c *cobra.Command, s *kubeSession) {
	// The examples are kubectl's; they work as they are with berth.
	c.Example = strings.ReplaceAll(c.Example, "kubectl ", "berth ")
	if run := c.Run; run != nil {
		c.Run = nil
		c.RunE = func(cmd *cobra.Command, args []string) (err error) {
			defer func() {
				if r := recover(); r != nil {
					exit, ok := r.(*kubeExit)
					if !ok {
						panic(r)
					}
					err = withHint(exit, s)
				}
			}()
			run(cmd, args)
			return nil
		}
	}
	for _, sub := range c.Commands() {
		returnErrors(sub, s)
	}
}

// withHint adds what to do to the errors a Berth user meets first.
func withHint(exit *kubeExit, s *kubeSession) error {
	cfg, err := s.load()
	switch {
	case errors.Is(err, errNotLoggedIn):
		return errNotLoggedIn
	case err != nil:
		return exit
	case strings.Contains(exit.msg, "You must be logged in to the server"):
		exit.msg += "; log in again with berth login " + cfg.Server
	case s.namespace == "" && cfg.Project == "" && strings.Contains(exit.msg, `"default"`):
		// Without a project kubectl acts in "default", which Berth lacks.
		exit.msg = fmt.Sprintf("no project: pass -n PROJECT, or choose a current one with berth project NAME (%s)", exit.msg)
	}
	return exit
}

// forgetDeletedProject makes delete stop using a current project it
// deleted, as `berth delete project` should: the next command then asks
// for a project instead of failing on a missing one. It looks even when
// the delete failed in part (one of several names unknown).
func forgetDeletedProject(c *cobra.Command, s *kubeSession) {
	run := c.Run
	c.Run = func(cmd *cobra.Command, args []string) {
		defer forgetIfGone(cmd, args, s)
		run(cmd, args)
	}
}

func forgetIfGone(cmd *cobra.Command, args []string, s *kubeSession) {
	if !slices.ContainsFunc(args, func(a string) bool {
		kind, _, _ := strings.Cut(a, "/")
		return slices.Contains([]string{"project", "projects", "namespace", "namespaces", "ns"}, strings.Split(kind, ".")[0])
	}) {
		return
	}
	cfg, err := s.load()
	if err != nil || cfg.Project == "" {
		return
	}
	client, err := newAPIClient(cfg)
	if err != nil {
		return
	}
	err = client.do(cmd.Context(), http.MethodGet, pathProjects+"/"+url.PathEscape(cfg.Project), nil, nil)
	if isNotFound(err) {
		cfg.Project = ""
		if err := cfg.save(); err != nil {
			fmt.Fprintln(cmd.ErrOrStderr(), "warning: the current project is gone, but", err)
		}
	}
}
