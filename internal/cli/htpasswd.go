package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"

	"github.com/berth-registry/berth/internal/auth"
)

func newHtpasswdCommand() *cobra.Command {
	var passwordStdin, remove bool
	cmd := &cobra.Command{
		Use:   "htpasswd FILE USER",
		Short: "Add a user to an htpasswd file, change the password, or remove the user (-D)",
		Long: `Add USER to the htpasswd file FILE (created when missing) or change USER's
password, with a bcrypt hash as htpasswd -B writes it; with -D, remove USER.
berth serve --htpasswd FILE reads the file again when it changes.

The password is asked for twice on a terminal, or read as one line from
standard input with --password-stdin; it is never an argument, which other
users of the machine could see. The file is replaced in one step (a new
file renamed over it), mode 0600, with its other lines as they were.`,
		Example: `  berth adm htpasswd /etc/berth/users alice
  printf '%s\n' "$PASSWORD" | berth adm htpasswd /etc/berth/users ci --password-stdin
  berth adm htpasswd -D /etc/berth/users alice`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, user := args[0], args[1]
			if err := auth.CheckHtpasswdUser(user); err != nil {
				return err
			}
			if remove && passwordStdin {
				return errors.New("-D removes the user: pass -D or --password-stdin, not both")
			}
			var entry string
			if !remove {
				password, err := readNewPassword(cmd, passwordStdin)
				if err != nil {
					return err
				}
				hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
				if errors.Is(err, bcrypt.ErrPasswordTooLong) {
					return errors.New("the password is longer than bcrypt's 72 bytes")
				}
				if err != nil {
					return fmt.Errorf("hash the password: %w", err)
				}
				entry = user + ":" + string(hash)
			}
			verb, err := updateHtpasswd(path, user, entry)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s password for user %s\n", verb, user)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input (one line)")
	f.BoolVarP(&remove, "delete", "D", false, "remove the user")
	return cmd
}

// readNewPassword reads the password as one line of standard input, or
// asks for it twice without echo on a terminal.
func readNewPassword(cmd *cobra.Command, fromStdin bool) (string, error) {
	in := cmd.InOrStdin()
	if fromStdin {
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read the password: %w", err)
		}
		password := strings.TrimRight(line, "\r\n")
		if password == "" {
			return "", errors.New("no password on standard input")
		}
		return password, nil
	}
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errors.New("standard input is not a terminal to ask for the password on: pass --password-stdin and give it there")
	}
	ask := func(prompt string) (string, error) {
		fmt.Fprint(cmd.ErrOrStderr(), prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		return string(b), nil
	}
	password, err := ask("New password: ")
	if err != nil {
		return "", err
	}
	if password == "" {
		return "", errors.New("no password given")
	}
	again, err := ask("Re-type new password: ")
	if err != nil {
		return "", err
	}
	if again != password {
		return "", errors.New("the passwords do not match")
	}
	return password, nil
}

// updateHtpasswd sets user's line of the htpasswd file at path to entry,
// or removes it when entry is "". The user's first line is replaced in
// place and any later one dropped (the provider takes the last, which
// would otherwise win); a new user's line goes at the end. Every other
// line stays as it was. It returns what it did, as htpasswd says it.
func updateHtpasswd(path, user, entry string) (string, error) {
	// Replace the file a symbolic link points to, not the link.
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved
	}
	old, err := os.Stat(path)
	var content []byte
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if entry == "" {
			return "", fmt.Errorf("user %s is not in %s: the file does not exist", user, path)
		}
		old = nil
	case err != nil:
		return "", err
	default:
		if content, err = os.ReadFile(path); err != nil {
			return "", err
		}
	}
	var out strings.Builder
	found := false
	for _, line := range strings.SplitAfter(string(content), "\n") {
		if name, _, isEntry, err := auth.ParseHtpasswdLine(strings.TrimRight(line, "\r\n")); err != nil || !isEntry || name != user {
			out.WriteString(line)
			continue
		}
		if !found && entry != "" {
			out.WriteString(entry + "\n")
		}
		found = true
	}
	verb := "Updating"
	switch {
	case entry == "" && !found:
		return "", fmt.Errorf("user %s is not in %s", user, path)
	case entry == "":
		verb = "Deleting"
	case !found:
		verb = "Adding"
		if out.Len() > 0 && !strings.HasSuffix(out.String(), "\n") {
			out.WriteString("\n")
		}
		out.WriteString(entry + "\n")
	}
	if err := writeFileAtomic(path, []byte(out.String()), old); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return verb, nil
}
