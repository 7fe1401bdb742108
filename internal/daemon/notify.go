package daemon

import (
	"net"
	"os"
)

// Notify sends a state string such as "READY=1" or "STOPPING=1" to systemd
// when the daemon runs under a Type=notify unit ($NOTIFY_SOCKET is set). It
// does nothing otherwise. A leading '@' names an abstract socket, which the
// net package handles.
func Notify(state string) error {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
