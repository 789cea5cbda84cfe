package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ImageStreams and ImageStreamTags are objects the real kubectl writes:
// create, apply twice (the second unchanged), apply a change, edit,
// patch, create an istag, delete — with the newest and oldest kubectl.
func TestKubectlWritesImageStreams(t *testing.T) {
	crane := requireTool(t, "crane")
	for _, version := range kubectlVersions {
		t.Run(version, func(t *testing.T) {
			requireTool(t, filepath.Join(kubectlDir, "kubectl."+version))
			s := startServer(t)
			ns := "writes"
			s.newProject(ns)
			k := newKubectl(t, s, version, oauthToken(t, s, "admin", adminPassword))
			dir := t.TempDir()
			ok := func(args ...string) string {
				t.Helper()
				out, errOut, err := k.run(args...)
				if err != nil {
					t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, errOut)
				}
				return strings.TrimSpace(out)
			}
			says := func(want string, args ...string) {
				t.Helper()
				if out := ok(args...); out != want {
					t.Fatalf("kubectl %s printed %q, want %q", strings.Join(args, " "), out, want)
				}
			}
			write := func(name, content string) string {
				t.Helper()
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			}
			env := []string{"DOCKER_CONFIG=" + filepath.Join(dir, "docker"), "SSL_CERT_FILE=" + s.CAFile()}
			runIn(t, dir, env, crane, "auth", "login", s.Addr, "-u", "admin", "-p", adminPassword)
			var digests []string
			for i, tag := range []string{"v1", "v2"} {
				layer, _ := tarGz(t, "n.txt", []byte(fmt.Sprintf("base %d\n", i)))
				if err := os.WriteFile(filepath.Join(dir, "l.tgz"), layer, 0o644); err != nil {
					t.Fatal(err)
				}
				out := runIn(t, dir, env, crane, "append", "-f", "l.tgz", "-t", s.Addr+"/"+ns+"/base:"+tag)
				digests = append(digests, digestRE.FindString(out))
			}
			image := func(istag string) string {
				t.Helper()
				return ok("get", "istag", istag, "-n", ns, "-o", "jsonpath={.image.metadata.name}")
			}

			stream := func(source string) string {
				return `apiVersion: image.openshift.io/v1
kind: ImageStream
metadata:
  name: app
  labels:
    team: a
spec:
  tags:
  - name: stable
    from:
      kind: ImageStreamTag
      name: ` + source + "\n"
			}
			file := write("is.yaml", stream("base:v1"))
			says("imagestream.image.openshift.io/app created", "create", "-f", file, "-n", ns)
			if got := image("app:stable"); got != digests[0] {
				t.Fatalf("app:stable = %s, want base:v1's %s", got, digests[0])
			}
			says(`imagestream.image.openshift.io "app" deleted`, "delete", "is", "app", "-n", ns)

			says("imagestream.image.openshift.io/app created", "apply", "-f", file, "-n", ns)
			says("imagestream.image.openshift.io/app unchanged", "apply", "-f", file, "-n", ns)
			write("is.yaml", stream("base:v2"))
			says("imagestream.image.openshift.io/app configured", "apply", "-f", file, "-n", ns)
			if got := image("app:stable"); got != digests[1] {
				t.Fatalf("after apply app:stable = %s, want base:v2's %s", got, digests[1])
			}
			says("imagestream.image.openshift.io/app unchanged", "apply", "-f", file, "-n", ns)

			editor := write("editor.sh", "#!/bin/sh\nsed -i 's/team: a/team: b/' \"$1\"\n")
			if err := os.Chmod(editor, 0o755); err != nil {
				t.Fatal(err)
			}
			says("imagestream.image.openshift.io/app edited", "EDITOR="+editor, "edit", "is", "app", "-n", ns)
			if got := ok("get", "is", "app", "-n", ns, "-o", "jsonpath={.metadata.labels.team}"); got != "b" {
				t.Fatalf("after edit labels.team = %q", got)
			}
			says("imagestream.image.openshift.io/app patched", "patch", "is", "app", "-n", ns, "--type", "merge",
				"-p", `{"spec":{"tags":[{"name":"stable","from":{"kind":"ImageStreamImage","name":"base@`+digests[0]+`"}}]}}`)
			if got := image("app:stable"); got != digests[0] {
				t.Fatalf("after patch app:stable = %s, want %s", got, digests[0])
			}

			istag := write("istag.yaml", `apiVersion: image.openshift.io/v1
kind: ImageStreamTag
metadata:
  name: app:prod
tag:
  from:
    kind: ImageStreamImage
    name: base@`+digests[1]+"\n")
			says("imagestreamtag.image.openshift.io/app:prod created", "create", "-f", istag, "-n", ns)
			if got := image("app:prod"); got != digests[1] {
				t.Fatalf("app:prod = %s, want %s", got, digests[1])
			}
			if _, errOut, err := k.run("create", "-f", istag, "-n", ns); err == nil || !strings.Contains(errOut, "AlreadyExists") {
				t.Fatalf("a second create of app:prod: %v %s", err, errOut)
			}
			says(`imagestreamtag.image.openshift.io "app:prod" deleted`, "delete", "istag", "app:prod", "-n", ns)

			says(`imagestream.image.openshift.io "app" deleted`, "delete", "-f", file, "-n", ns)
			if _, errOut, err := k.run("get", "is", "app", "-n", ns); err == nil || !strings.Contains(errOut, "NotFound") {
				t.Fatalf("get is after delete: %v %s", err, errOut)
			}
			if got := image("base:v1"); got != digests[0] {
				t.Fatalf("deleting app touched base: %s", got)
			}
		})
	}
}

// berth rollback points a tag back at its previous image, and podman
// pulls that image by the tag.
func TestRollbackPodman(t *testing.T) {
	s := startServer(t)
	cli := newBerthCLI(t)
	cli.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	cli.run("", "new-project", "rb")
	token := strings.TrimSpace(cli.run("", "whoami", "-t"))

	ce, pm, _ := podmanFor(t, s, token)
	certs := s.CertDir()
	ref := s.Addr + "/rb/app:latest"
	var configs []string
	for _, v := range []string{"first", "second"} {
		img := newTestImage(t, v, "v.txt", []byte(v+"\n"))
		id, _ := loadIntoPodman(t, ce, pm, img)
		pm("tag", id, ref)
		pm("push", "--signature-policy", ce.Policy, "--cert-dir", certs, ref)
		configs = append(configs, img.ConfigDigest)
	}
	if out := cli.run("", "rollback", "rb/app:latest"); !strings.HasPrefix(out, "Rolled back rb/app:latest to sha256:") {
		t.Fatalf("rollback: %q", out)
	}
	pm("rmi", "--all", "--force")
	pm("pull", "--signature-policy", ce.Policy, "--cert-dir", certs, ref)
	if id := strings.TrimSpace(pm("image", "inspect", "--format", "{{.Id}}", ref)); "sha256:"+id != configs[0] {
		t.Fatalf("after rollback podman pulled %s, want the first image %s", id, configs[0])
	}
	// Rolling back again goes forward: history is never rewritten.
	cli.run("", "rollback", "rb/app:latest")
	pm("rmi", "--all", "--force")
	pm("pull", "--signature-policy", ce.Policy, "--cert-dir", certs, ref)
	if id := strings.TrimSpace(pm("image", "inspect", "--format", "{{.Id}}", ref)); "sha256:"+id != configs[1] {
		t.Fatalf("after the second rollback podman pulled %s, want %s", id, configs[1])
	}
	out, errOut, err := cli.try("", "rollback", "rb/app:latest", "--to", "9")
	if err == nil || !strings.Contains(errOut, "has 4 entries") {
		t.Fatalf("rollback --to 9: %v %s %s", err, out, errOut)
	}
}
