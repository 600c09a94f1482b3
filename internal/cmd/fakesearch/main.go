// Command fakesearch serves fake Brave Search and SearXNG APIs on one
// loopback address, answering in each API's real response format, so a
// local taskrunner can search without the internet (`make fake-search`).
//
//	Brave:   http://ADDR/brave/res/v1/web/search   (key: the searchtest.BraveKey constant)
//	SearXNG: http://ADDR/searxng/search?format=json
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/taskrunner/taskrunner/search/searchtest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "address to listen on (loopback)")
	flag.Parse()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	hits := []searchtest.Hit{
		{Title: "River: fast and reliable background jobs in Go", URL: "https://riverqueue.com/", Snippet: "Postgres-backed job queue for Go."},
		{Title: "pgx: PostgreSQL driver and toolkit for Go", URL: "https://github.com/jackc/pgx", Snippet: "Pure Go driver and toolkit."},
		{Title: "sqlc: compile SQL to type-safe code", URL: "https://sqlc.dev/", Snippet: "Generate type-safe code from SQL."},
	}
	brave, searx := searchtest.NewBraveHandler(), searchtest.NewSearXNGHandler()
	brave.SetHits(hits...)
	searx.SetHits(hits[1], hits[0])

	mux := http.NewServeMux()
	mux.Handle("/brave/", http.StripPrefix("/brave", brave.Handler))
	mux.Handle("/searxng/", http.StripPrefix("/searxng", searx.Handler))
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakesearch:", err)
		os.Exit(1)
	}
	base := "http://" + ln.Addr().String()
	logger.Info("fake search providers listening", slog.String("event", "fakesearch_listening"),
		slog.String("BRAVE_API_URL", base+"/brave/res/v1/web/search"), slog.String("BRAVE_API_KEY", searchtest.BraveKey),
		slog.String("SEARXNG_URL", base+"/searxng"))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "fakesearch:", err)
		os.Exit(1)
	}
}
