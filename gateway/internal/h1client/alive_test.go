package h1client

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// TestAliveTellsIdleConnectionsFromGoneOnes runs both ways of checking an idle connection: the
// peek of this system and the short wait used where there is none.
func TestAliveTellsIdleConnectionsFromGoneOnes(t *testing.T) {
	t.Parallel()
	checks := map[string]func(*h1Conn) bool{
		"socketAlive": (*h1Conn).socketAlive,
		"aliveAfter":  func(c *h1Conn) bool { return c.aliveAfter(aliveWait) },
	}
	peers := []struct {
		name  string
		peer  func(t *testing.T, server net.Conn)
		alive bool
	}{
		{"the peer is idle", func(*testing.T, net.Conn) {}, true},
		{"the peer sent data unasked", func(t *testing.T, s net.Conn) {
			if _, err := s.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"the peer closed", func(t *testing.T, s net.Conn) {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for name, check := range checks {
		for _, p := range peers {
			t.Run(name+"/"+p.name, func(t *testing.T) {
				t.Parallel()
				client, server := tcpPair(t)
				c := &h1Conn{nc: client, br: bufio.NewReader(client)}
				p.peer(t, server)
				// What the peer did is in the client's socket before the check.
				time.Sleep(20 * time.Millisecond)
				if got := check(c); got != p.alive {
					t.Fatalf("%s = %t, want %t", name, got, p.alive)
				}
				if !p.alive {
					return
				}
				// A connection found alive keeps no deadline: it serves a read long after.
				go func() {
					time.Sleep(50 * time.Millisecond)
					_, _ = server.Write([]byte("y"))
				}()
				var buf [1]byte
				if _, err := client.Read(buf[:]); err != nil || buf[0] != 'y' {
					t.Fatalf("read after the check = %q, %v", buf[:], err)
				}
			})
		}
	}
}

func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}
