package server

import (
	"log/slog"
	"net"
	"os"
)

// sdNotify tells the service manager that started the process (systemd,
// Type=notify) how it is: "READY=1" once it serves, "STOPPING=1" when it
// begins to shut down. Without $NOTIFY_SOCKET it does nothing. The
// protocol is one datagram on a unix socket, so it is written here rather
// than taken from a library.
func sdNotify(state string, log *slog.Logger) {
	socket := os.Getenv("NOTIFY_SOCKET")
	if socket == "" {
		return
	}
	if socket[0] == '@' {
		socket = "\x00" + socket[1:] // an abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		log.Warn("tell the service manager", "state", state, "err", err)
		return
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		log.Warn("tell the service manager", "state", state, "err", err)
	}
}
