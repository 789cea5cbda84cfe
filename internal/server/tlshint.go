package server

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// tlsListener serves TLS on ln, and answers a plain HTTP request on it
// with a 400 that says to use https, where Go's TLS server would answer
// only "Client sent an HTTP request to an HTTPS server". oras, for one,
// talks plain HTTP to localhost unless told --plain-http=false.
//
// Accept does not wait for a connection's first byte: each connection is
// a *tls.Conn (as net/http needs to see, for Request.TLS and HTTP/2) over
// a sniffConn, whose first read, made by the handshake in the
// connection's own goroutine under the server's handshake deadline,
// decides what it carries.
func tlsListener(ln net.Listener, config *tls.Config) net.Listener {
	return &hintingListener{Listener: ln, config: config}
}

type hintingListener struct {
	net.Listener
	config *tls.Config
}

func (l *hintingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(&sniffConn{Conn: c}, l.config), nil
}

// recordTypeHandshake starts every TLS connection a client opens.
const recordTypeHandshake = 0x16

// errPlainHTTP ends the handshake of a connection that spoke plain HTTP;
// net/http logs it as a TLS handshake error.
var errPlainHTTP = errors.New("plain HTTP on the TLS port: answered with a hint to use https")

// sniffConn passes a TLS connection through untouched (deadlines included:
// request body pacing sets them through http.ResponseController), and
// answers anything else as plain HTTP.
type sniffConn struct {
	net.Conn
	sniffed bool // only the TLS layer reads, one read at a time
}

func (c *sniffConn) Read(p []byte) (int, error) {
	if c.sniffed {
		return c.Conn.Read(p)
	}
	n, err := c.Conn.Read(p)
	if n == 0 {
		return n, err
	}
	c.sniffed = true
	if p[0] == recordTypeHandshake {
		return n, err
	}
	answerPlainHTTP(c.Conn, p[:n])
	return 0, errPlainHTTP
}

// Bounds on answering a plain HTTP request: it is read for its Host and
// path only, and a client that neither sends nor reads is not waited for.
const (
	plainHeadLimit = 8 << 10
	plainTimeout   = 5 * time.Second
	plainDrain     = 64 << 10
)

// answerPlainHTTP reads the request that began with first (its head, as
// far as it can be read within the bounds) and answers 400 with where to
// go instead. On /v2 the message is in the OCI error envelope: registry
// clients show an error's message and drop a body they cannot parse, so
// only there does the hint reach the user's terminal. Elsewhere (curl, a
// browser) plain text reads best.
func answerPlainHTTP(conn net.Conn, first []byte) {
	_ = conn.SetDeadline(time.Now().Add(plainTimeout))
	head := bufio.NewReader(io.MultiReader(bytes.NewReader(first), io.LimitReader(conn, plainHeadLimit)))
	method, host, path := "GET", conn.LocalAddr().String(), "/"
	if req, err := http.ReadRequest(head); err == nil {
		method, path = req.Method, req.URL.EscapedPath()
		if validHost(req.Host) {
			host = req.Host
		}
	}
	msg := fmt.Sprintf("this port speaks HTTPS, not plain HTTP: use https://%s%s "+
		"(oras: drop --plain-http, and pass --plain-http=false for localhost, where oras defaults to plain HTTP; "+
		"curl: https:// with --cacert DATA/pki/ca.crt, DATA being berth's data directory)", host, path)
	contentType, body := "text/plain; charset=utf-8", []byte(msg+"\n")
	if path == "/v2" || strings.HasPrefix(path, "/v2/") {
		contentType = "application/json"
		body, _ = json.Marshal(map[string]any{"errors": []map[string]string{{"code": "UNSUPPORTED", "message": msg}}})
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "HTTP/1.1 400 Bad Request\r\nContent-Type: %s\r\nContent-Length: %d\r\n"+
		"X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n", contentType, len(body))
	if method != http.MethodHead {
		out.Write(body)
	}
	if _, err := conn.Write(out.Bytes()); err != nil {
		return
	}
	// Closing with unread request bytes would reset the connection and
	// could lose the answer: say we are done, and read what is left (a
	// body) until the client closes too, within the bounds.
	if tcp, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = tcp.CloseWrite()
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, plainDrain))
	}
}

// validHost accepts a Host header worth echoing: a name or address and a
// port, nothing else.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(".-:[]", r):
		default:
			return false
		}
	}
	return true
}
