package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// posterTimeout bounds each request of a poster, from write to the end of
// its answer.
const posterTimeout = 30 * time.Second

// poster is the enqueue figures' load generator: it posts one JSON body to
// one path over up to n keep-alive HTTP/1.1 connections, as wrk and hey
// do. The server and PostgreSQL share this machine's cores with it, so it
// is kept lean: net/http's Transport hands each request to a reader and a
// writer goroutine of its connection and back, and on 2 cores that CPU
// would be taken from the server being measured. The answer is still
// parsed by net/http (http.ReadResponse) and its status checked.
type poster struct {
	addr  string
	what  string // names the request in errors, "POST /tasks"
	req   []byte // the whole request: head and body
	want  int
	conns chan *posterConn // idle connections
}

type posterConn struct {
	c  net.Conn
	br *bufio.Reader
}

// newPoster returns a poster of body to path on addr, for n concurrent
// callers, whose answers must have status want.
func newPoster(addr, path string, body []byte, want, n int) *poster {
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, addr, len(body))
	req.Write(body)
	return &poster{addr: addr, what: "POST " + path, req: req.Bytes(), want: want, conns: make(chan *posterConn, n)}
}

// post sends the request once and reads its answer to the end.
func (p *poster) post(ctx context.Context) error {
	var pc *posterConn
	select {
	case pc = <-p.conns:
	default:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", p.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", p.what, err)
		}
		pc = &posterConn{c: c, br: bufio.NewReader(c)}
	}
	reuse, err := pc.roundTrip(ctx, p)
	if err != nil || !reuse {
		pc.c.Close()
		return err
	}
	select {
	case p.conns <- pc:
	default:
		pc.c.Close()
	}
	return nil
}

// roundTrip writes p's request on pc and reads the answer; reuse says the
// connection may take another request.
func (pc *posterConn) roundTrip(ctx context.Context, p *poster) (reuse bool, err error) {
	deadline := time.Now().Add(posterTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := pc.c.SetDeadline(deadline); err != nil {
		return false, fmt.Errorf("%s: %w", p.what, err)
	}
	if _, err := pc.c.Write(p.req); err != nil {
		return false, fmt.Errorf("%s: write: %w", p.what, err)
	}
	resp, err := http.ReadResponse(pc.br, nil)
	if err != nil {
		return false, fmt.Errorf("%s: read answer: %w", p.what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != p.want {
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return false, fmt.Errorf("%s: status %d: %s", p.what, resp.StatusCode, bytes.TrimSpace(answer))
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return false, fmt.Errorf("%s: read answer body: %w", p.what, err)
	}
	return !resp.Close, nil
}

// close closes the idle connections.
func (p *poster) close() {
	for {
		select {
		case pc := <-p.conns:
			pc.c.Close()
		default:
			return
		}
	}
}
