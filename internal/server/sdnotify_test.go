package server

import (
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// With $NOTIFY_SOCKET set, as systemd sets it for Type=notify, the state
// arrives there as one datagram.
func TestSDNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	sdNotify("READY=1", slog.New(slog.DiscardHandler))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("the service manager got %q, %v; want READY=1", buf[:n], err)
	}
}
