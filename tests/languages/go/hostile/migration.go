// Package migration is a hostile guest in Go, for the end-to-end tests: what it does is
// chosen by the row of the table `go_mode`, set by the test.
//
//   - "probe": reads and writes files, lists a directory, reads the environment and the
//     arguments, dials TCP and sends UDP to the ports the test listens on, resolves a name,
//     and reads the clocks; it prints what happened (stdout goes to wasmig's log) and fails
//     if anything got through.
//   - "memory": allocates until the memory cap stops it.
//   - "sleep": creates a table, then sleeps for an hour (the deadline must stop it).
//   - "panic": creates a table, then panics.
package migration

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"wasmig"
)

func init() {
	wasmig.Register(upgrade, downgrade)
}

func upgrade() error {
	var mode string
	if err := wasmig.QueryRow("SELECT mode FROM go_mode").Scan(&mode); err != nil {
		return err
	}
	switch mode {
	case "probe":
		return probe()
	case "memory":
		var hoard [][]byte
		for {
			hoard = append(hoard, make([]byte, 16<<20))
			hoard[len(hoard)-1][0] = 1
			wasmig.Infof("holding %d MiB", len(hoard)*16)
		}
	case "sleep":
		if err := wasmig.Batch("CREATE TABLE go_slept (x integer)"); err != nil {
			return err
		}
		time.Sleep(time.Hour)
		return nil
	case "panic":
		if err := wasmig.Batch("CREATE TABLE go_panicked (x integer)"); err != nil {
			return err
		}
		var rows []int
		fmt.Println(rows[len(mode)]) // index out of range: a runtime panic
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode)
}

func probe() error {
	var escaped []string
	if _, err := os.ReadFile("/etc/passwd"); err == nil {
		escaped = append(escaped, "read /etc/passwd")
	} else {
		fmt.Println("file read denied:", err)
	}
	if _, err := os.ReadDir("."); err == nil {
		escaped = append(escaped, "listed the current directory")
	} else {
		fmt.Println("directory listing denied:", err)
	}
	if err := os.WriteFile("/tmp/go-guest-was-here", []byte("x"), 0o644); err == nil {
		escaped = append(escaped, "wrote /tmp/go-guest-was-here")
	} else {
		fmt.Println("file write denied:", err)
	}
	if env := os.Environ(); len(env) > 0 {
		escaped = append(escaped, "read the environment: "+strings.Join(env, " "))
	} else {
		fmt.Println("environment denied: 0 variables")
	}
	fmt.Println("arguments:", len(os.Args))
	// Go's wasip1 port has no sockets: its net package is an in-process fake network. The
	// test listens on these ports and checks that nothing arrives.
	var tcpPort, udpPort int
	if err := wasmig.QueryRow("SELECT tcp_port, udp_port FROM go_mode").Scan(&tcpPort, &udpPort); err != nil {
		return err
	}
	if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort)); err == nil {
		conn.Close()
		escaped = append(escaped, "connected over TCP")
	} else {
		fmt.Println("tcp denied:", err)
	}
	if conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort)); err == nil {
		_, err := conn.Write([]byte("leak"))
		conn.Close()
		fmt.Println("udp: a datagram written into Go's in-process network:", err)
	} else {
		fmt.Println("udp denied:", err)
	}
	if addrs, err := net.LookupHost("example.com"); err == nil {
		escaped = append(escaped, fmt.Sprint("resolved example.com: ", addrs))
	} else {
		fmt.Println("name lookup denied:", err)
	}
	// The clocks are real: the wall clock is after 2025, the monotonic clock moves.
	start := time.Now()
	if start.Year() < 2025 {
		escaped = append(escaped, fmt.Sprint("a wrong wall clock: ", start))
	}
	for time.Since(start) <= 0 {
	}
	fmt.Println("clocks: real")
	if len(escaped) > 0 {
		return fmt.Errorf("escaped the sandbox: %s", strings.Join(escaped, ", "))
	}
	return nil
}

func downgrade() error {
	return nil
}
