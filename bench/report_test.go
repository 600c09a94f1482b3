package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	values := ms(5, 1, 4, 2, 3, 10, 9, 8, 7, 6) // 1..10 shuffled
	cases := []struct {
		q    float64
		want time.Duration
	}{
		{0, 1 * time.Millisecond},
		{0.5, 5 * time.Millisecond},
		{0.9, 9 * time.Millisecond},
		{0.99, 10 * time.Millisecond},
		{1, 10 * time.Millisecond},
	}
	for _, c := range cases {
		if got := percentile(values, c.q); got != c.want {
			t.Errorf("percentile(1..10 ms, %v) = %v, want %v", c.q, got, c.want)
		}
	}
	if values[0] != 5*time.Millisecond {
		t.Error("percentile sorted its argument in place")
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
}

func TestMedian(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median(3,1,2) = %v, want 2", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median(4,1,3,2) = %v, want 2.5", got)
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v, want NaN", got)
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	err := writeTable(&b, []row{
		{name: "single enqueue (16 clients)", bare: 8123.4, taskrunner: 6500, goal: 0.8},
		{name: "end-to-end echo (200k)", bare: 14000, taskrunner: 9000, goal: 0.7},
		{name: "breakdown", bare: 0, taskrunner: 100},
		{name: "just short", bare: 1000, taskrunner: 797, goal: 0.8},
		{name: "cached search (2k): server time", latency: &latencyRow{p50: 620 * time.Microsecond, p99: 1800 * time.Microsecond, maxP50: 2 * time.Millisecond}},
		{name: "over", latency: &latencyRow{p50: 2000*time.Microsecond + 1, p99: 3 * time.Millisecond, maxP50: 2 * time.Millisecond}},
		{name: "info", latency: &latencyRow{p50: 4 * time.Millisecond, p99: 9 * time.Millisecond}},
		{name: "unmeasured", latency: &latencyRow{p50: -1, p99: -1, maxP50: 2 * time.Millisecond}},
		{name: "pickup", latency: &latencyRow{p50: 4 * time.Millisecond, p99: 9 * time.Millisecond, maxP50: 20 * time.Millisecond,
			hasBare: true, bareP50: 3 * time.Millisecond, bareP99: 8*time.Millisecond + 1}},
		{name: "pickup slow", latency: &latencyRow{p50: 21 * time.Millisecond, p99: 40 * time.Millisecond, maxP50: 20 * time.Millisecond,
			hasBare: true, bareP50: 42 * time.Millisecond, bareP99: 50 * time.Millisecond}},
		{name: "pickup bare unmeasured", latency: &latencyRow{p50: 4 * time.Millisecond, p99: 9 * time.Millisecond, maxP50: 20 * time.Millisecond,
			hasBare: true, bareP50: -1, bareP99: -1}},
		{name: "artifact upload (25 MiB)", bare: 250e6, taskrunner: 212.34e6, unit: unitBytes, goal: 0.8},
		{name: "info MB/s", bare: 0, taskrunner: 1e6, unit: unitBytes},
		{name: "server peak RSS", memory: &memoryRow{peak: 61_234_567, limit: 100e6}},
		{name: "rss over", memory: &memoryRow{peak: 100e6, limit: 100e6}},
		{name: "rss unmeasured", memory: &memoryRow{peak: -1, limit: 100e6}},
		{name: "rss info", memory: &memoryRow{peak: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	want := [][]string{
		{"figure", "bare", "River", "taskrunner", "ratio", "goal", "met"},
		{"single", "enqueue", "(16", "clients)", "8123/s", "6500/s", "0.80", ">=", "0.8", "yes"},
		{"end-to-end", "echo", "(200k)", "14000/s", "9000/s", "0.64", ">=", "0.7", "no"},
		{"breakdown", "0/s", "100/s", "n/a", "-", "-"},
		{"just", "short", "1000/s", "797/s", "0.79", ">=", "0.8", "no"},
		{"cached", "search", "(2k):", "server", "time", "-", "p50", "0.62", "ms,", "p99", "1.80", "ms", "-", "p50", "<=", "2", "ms", "yes"},
		{"over", "-", "p50", "2.01", "ms,", "p99", "3.00", "ms", "-", "p50", "<=", "2", "ms", "no"},
		{"info", "-", "p50", "4.00", "ms,", "p99", "9.00", "ms", "-", "-", "-"},
		{"unmeasured", "-", "p50", "n/a,", "p99", "n/a", "-", "p50", "<=", "2", "ms", "no"},
		{"pickup", "p50", "3.00", "ms,", "p99", "8.01", "ms", "p50", "4.00", "ms,", "p99", "9.00", "ms", "0.75", "p50", "<=", "20", "ms", "yes"},
		{"pickup", "slow", "p50", "42.00", "ms,", "p99", "50.00", "ms", "p50", "21.00", "ms,", "p99", "40.00", "ms", "2.00", "p50", "<=", "20", "ms", "no"},
		{"pickup", "bare", "unmeasured", "p50", "n/a,", "p99", "n/a", "p50", "4.00", "ms,", "p99", "9.00", "ms", "n/a", "p50", "<=", "20", "ms", "yes"},
		{"artifact", "upload", "(25", "MiB)", "250.0", "MB/s", "212.3", "MB/s", "0.84", ">=", "0.8", "yes"},
		{"info", "MB/s", "0.0", "MB/s", "1.0", "MB/s", "n/a", "-", "-"},
		{"server", "peak", "RSS", "-", "61.3", "MB", "-", "<", "100", "MB", "yes"},
		{"rss", "over", "-", "100.0", "MB", "-", "<", "100", "MB", "no"},
		{"rss", "unmeasured", "-", "n/a", "-", "<", "100", "MB", "no"},
		{"rss", "info", "-", "0.1", "MB", "-", "-", "-"},
	}
	if len(lines) != len(want) {
		t.Fatalf("table has %d lines, want %d:\n%s", len(lines), len(want), b.String())
	}
	for i, line := range lines {
		if got := strings.Fields(line); strings.Join(got, " ") != strings.Join(want[i], " ") {
			t.Errorf("line %d = %q, want fields %q", i, line, want[i])
		}
	}
	// Columns line up: every row's ratio starts where the header's does.
	col := strings.Index(lines[0], "ratio")
	for _, line := range lines[1:3] {
		if !strings.HasPrefix(line[col:], "0.") {
			t.Errorf("ratio column not aligned at %d in %q", col, line)
		}
	}
}

func TestLatencyFigureRow(t *testing.T) {
	f := &latencyFigure{name: "x", maxP50: 2 * time.Millisecond}
	if r := f.row(); r.latency == nil || r.latency.p50 >= 0 || r.latency.p99 >= 0 {
		t.Errorf("row of no rounds = %+v, want p50 and p99 unmeasured", r.latency)
	}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	f.add([]time.Duration{ms(1), ms(2), ms(3), ms(100)})
	f.add([]time.Duration{ms(3), ms(3), ms(3), ms(50)})
	f.add([]time.Duration{ms(2), ms(2), ms(2), ms(70)})
	r := f.row()
	if r.name != "x" || r.latency.maxP50 != ms(2) {
		t.Errorf("row = %+v, want name x and the goal kept", r)
	}
	if r.latency.p50 != ms(2) || r.latency.p99 != ms(70) {
		t.Errorf("p50, p99 = %v, %v; want the medians across rounds, 2ms and 70ms", r.latency.p50, r.latency.p99)
	}
	if r.latency.hasBare || r.cells()[1] != "-" || r.cells()[3] != "-" {
		t.Errorf("a figure with no bare counterpart shows %q", r.cells())
	}
}

func TestLatencyFigureRowWithBare(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	f := &latencyFigure{name: "pickup", maxP50: ms(20), withBare: true}
	if r := f.row(); !r.latency.hasBare || r.latency.bareP50 >= 0 || r.latency.p50 >= 0 || !math.IsNaN(r.latency.ratio()) {
		t.Errorf("row of no rounds = %+v, want both sides unmeasured and no ratio", r.latency)
	}
	f.add([]time.Duration{ms(4), ms(4), ms(30)})
	f.add([]time.Duration{ms(6), ms(6), ms(10)})
	f.add([]time.Duration{ms(5), ms(5), ms(20)})
	f.addBare([]time.Duration{ms(3), ms(3), ms(9)})
	f.addBare([]time.Duration{ms(2), ms(2), ms(7)})
	f.addBare([]time.Duration{ms(10), ms(10), ms(8)})
	r := f.row()
	l := r.latency
	if l.p50 != ms(5) || l.p99 != ms(20) || l.bareP50 != ms(3) || l.bareP99 != ms(9) {
		t.Errorf("row = %+v; want taskrunner p50 5ms, p99 20ms and bare p50 3ms, p99 9ms (medians across rounds, each side apart)", l)
	}
	if got := l.ratio(); got != 0.6 {
		t.Errorf("ratio = %v, want bare p50 / taskrunner p50 = 0.6", got)
	}
	if c := r.cells(); c[1] != "p50 3.00 ms, p99 9.00 ms" || c[3] != "0.60" || c[5] != "yes" {
		t.Errorf("cells = %q", c)
	}
	zero := &latencyRow{p50: 0, p99: 0, hasBare: true, bareP50: ms(1), bareP99: ms(1)}
	if !math.IsNaN(zero.ratio()) {
		t.Error("a taskrunner p50 of 0 gave a ratio")
	}
}

func TestFormatTableLatency(t *testing.T) {
	cases := map[time.Duration]string{
		0:                          "0.00 ms",
		620 * time.Microsecond:     "0.62 ms",
		620*time.Microsecond + 1:   "0.63 ms",
		2 * time.Millisecond:       "2.00 ms",
		2*time.Millisecond + 1:     "2.01 ms",
		1234567 * time.Microsecond: "1234.57 ms",
		-1:                         "n/a",
	}
	for d, want := range cases {
		if got := formatTableLatency(d); got != want {
			t.Errorf("formatTableLatency(%d ns) = %q, want %q", int64(d), got, want)
		}
	}
}

func TestCountLabel(t *testing.T) {
	for n, want := range map[int]string{20000: "20k", 1000: "1k", 1500: "1500", 500: "500", 1_000_000: "1M", 1_500_000: "1500k"} {
		if got := countLabel(n); got != want {
			t.Errorf("countLabel(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBenchURLs(t *testing.T) {
	bench, admin, err := benchURLs("postgres://u:p@127.0.0.1:5432/taskrunner?sslmode=disable", "taskrunner_bench")
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://u:p@127.0.0.1:5432/taskrunner_bench?sslmode=disable"; bench != want {
		t.Errorf("bench URL = %q, want %q", bench, want)
	}
	if want := "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable"; admin != want {
		t.Errorf("admin URL = %q, want %q", admin, want)
	}
	if _, _, err := benchURLs("host=127.0.0.1 dbname=taskrunner", "x"); err == nil {
		t.Error("a key=value connection string was accepted")
	}
}

func TestRunLoadCountsOnlyTheWindow(t *testing.T) {
	var calls atomic.Int64
	op := func(context.Context) error {
		calls.Add(1)
		time.Sleep(time.Millisecond)
		return nil
	}
	r, err := runLoad(context.Background(), 4, 50*time.Millisecond, 100*time.Millisecond, op)
	if err != nil {
		t.Fatal(err)
	}
	if r.elapsed != 100*time.Millisecond {
		t.Errorf("elapsed = %v, want the measured window", r.elapsed)
	}
	if r.ops == 0 || int64(r.ops) >= calls.Load() || len(r.latencies) != r.ops {
		t.Errorf("ops = %d (latencies %d) of %d calls: want some, fewer than all (warm-up excluded)", r.ops, len(r.latencies), calls.Load())
	}
}

func TestRunLoadStopsOnError(t *testing.T) {
	boom := errors.New("boom")
	var calls atomic.Int64
	op := func(context.Context) error {
		if calls.Add(1) == 10 {
			return boom
		}
		return nil
	}
	start := time.Now()
	_, err := runLoad(context.Background(), 4, 0, time.Minute, op)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Error("runLoad kept going after an error")
	}
}

func TestParseOptionsSearch(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.searchTasks != 2000 || o.searchClients < 1 || o.searchGoal != 2*time.Millisecond {
		t.Errorf("defaults: -search-tasks %d, -search-clients %d, -search-goal %s; want 2000, at least 1, 2ms", o.searchTasks, o.searchClients, o.searchGoal)
	}
	if o, err := parseOptions([]string{"-search-tasks", "0"}, io.Discard); err != nil || o.searchTasks != 0 {
		t.Errorf("-search-tasks 0 (skip the figure): %v", err)
	}
	for _, args := range [][]string{{"-search-tasks", "-1"}, {"-search-clients", "0"}, {"-search-goal", "-1ms"}} {
		if _, err := parseOptions(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

func TestParseOptionsBatchAndPickup(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.batchSize != 50 || o.batchGoal != 0.9 || !o.batch() {
		t.Errorf("defaults: -batch-size %d, -batch-goal %v; want 50 and 0.9 (DESIGN.md)", o.batchSize, o.batchGoal)
	}
	if o.pickupTasks < 1 || o.pickupRate != 50 || o.pickupWarm <= 0 || o.pickupGoal != 20*time.Millisecond || !o.pickup() {
		t.Errorf("defaults: -pickup-tasks %d, -pickup-rate %v, -pickup-warmup %s, -pickup-goal %s; want some, 50, some, 20ms",
			o.pickupTasks, o.pickupRate, o.pickupWarm, o.pickupGoal)
	}
	if o, err := parseOptions([]string{"-batch-size", "0", "-pickup-tasks", "0"}, io.Discard); err != nil || o.batch() || o.pickup() {
		t.Errorf("-batch-size 0 -pickup-tasks 0 (skip the figures): %v", err)
	}
	for _, args := range [][]string{
		{"-batch-size", "-1"}, {"-pickup-tasks", "-1"}, {"-pickup-rate", "0"}, {"-pickup-rate", "-5"}, {"-pickup-rate", "NaN"},
		{"-pickup-rate", "100000"}, {"-pickup-warmup", "-1s"}, {"-pickup-goal", "-1ms"},
	} {
		if _, err := parseOptions(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

func TestBatchBody(t *testing.T) {
	b, err := batchBody(50)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Tasks []struct {
			Type   string          `json:"type"`
			Params json.RawMessage `json:"params"`
		} `json:"tasks"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("batch body %s: %v", b, err)
	}
	if len(body.Tasks) != 50 {
		t.Fatalf("batch body holds %d tasks, want 50", len(body.Tasks))
	}
	for i, task := range body.Tasks {
		if task.Type != "echo" || string(task.Params) != `{"msg":"hello"}` {
			t.Errorf("task %d = %s %s, want the single-enqueue figure's echo task", i, task.Type, task.Params)
		}
	}
}

func TestPickupWarmTasks(t *testing.T) {
	cases := []struct {
		rate float64
		warm time.Duration
		want int
	}{
		{50, time.Second, 50},
		{50, 0, 0},
		{12.5, 100 * time.Millisecond, 1},
		{50, 1500 * time.Millisecond, 75},
	}
	for _, c := range cases {
		if got := pickupWarmTasks(c.rate, c.warm); got != c.want {
			t.Errorf("pickupWarmTasks(%v, %s) = %d, want %d", c.rate, c.warm, got, c.want)
		}
	}
}

func TestFormatPerSecond(t *testing.T) {
	for rate, want := range map[float64]string{50: "50", 12.5: "12.5", 1000: "1000"} {
		if got := formatPerSecond(rate); got != want {
			t.Errorf("formatPerSecond(%v) = %q, want %q", rate, got, want)
		}
	}
}

func TestFormatMB(t *testing.T) {
	cases := map[int64]string{
		0:           "0.0 MB",
		1:           "0.1 MB",
		99_900_000:  "99.9 MB",
		99_900_001:  "100.0 MB",
		100_000_000: "100.0 MB",
		-1:          "n/a",
	}
	for b, want := range cases {
		if got := formatMB(b); got != want {
			t.Errorf("formatMB(%d) = %q, want %q", b, got, want)
		}
	}
	if got := formatMBps(123.456e6); got != "123.5 MB/s" {
		t.Errorf("formatMBps(123.456e6) = %q, want 123.5 MB/s", got)
	}
	if got := formatMBps(math.NaN()); got != "n/a" {
		t.Errorf("formatMBps(NaN) = %q, want n/a", got)
	}
}

func TestPeakFigureRow(t *testing.T) {
	f := &peakFigure{name: "rss", limit: 100e6}
	if r := f.row(); r.memory == nil || r.memory.peak >= 0 || r.memory.limit != 100e6 {
		t.Errorf("row of no rounds = %+v, want the peak unmeasured and the limit kept", r.memory)
	}
	f.add(60e6)
	f.add(90e6)
	f.add(70e6)
	if r := f.row(); r.name != "rss" || r.memory.peak != 90e6 {
		t.Errorf("row = %+v %+v, want the largest peak across rounds, 90e6", r, r.memory)
	}
}

func TestArtifactRows(t *testing.T) {
	names := func(args ...string) []string {
		o, err := parseOptions(append(args, "-fair-tasks", "0", "-callback-tasks", "0"), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range newFigures(o).rows() {
			out = append(out, r.name)
		}
		return out
	}
	got := strings.Join(names("-search-tasks", "0"), "|")
	want := "single enqueue (16 clients)|batch enqueue of 50 (16 clients)|end-to-end echo (200k)|pickup latency enqueue -> running (50/s)|" +
		"artifact upload (25 MiB)|artifact download (25 MiB)|  artifact upload, unknown length|  server peak RSS (VmHWM)|" +
		"8 concurrent 25 MiB base64 uploads: server peak RSS"
	if got != want {
		t.Errorf("rows = %q, want %q", got, want)
	}
	got = strings.Join(names("-batch-size", "0", "-pickup-tasks", "0", "-artifact-mb", "0"), "|")
	if want := "single enqueue (16 clients)|end-to-end echo (200k)|cached search (2k): server time|  cached search: enqueue -> finished"; got != want {
		t.Errorf("-batch-size 0 -pickup-tasks 0 -artifact-mb 0: rows = %q, want %q", got, want)
	}
	got = strings.Join(names("-breakdown", "-search-tasks", "0", "-artifact-mb", "0", "-clients", "8", "-batch-size", "100", "-pickup-rate", "12.5"), "|")
	want = "single enqueue (8 clients)|  breakdown: Service.Submit, no HTTP|  breakdown: POST /tasks, each its own insert|batch enqueue of 100 (8 clients)|end-to-end echo (200k)|  breakdown: echo, no RunRecorder|pickup latency enqueue -> running (12.5/s)"
	if got != want {
		t.Errorf("-breakdown: rows = %q, want %q", got, want)
	}
	if got := names("-search-tasks", "0", "-artifact-chunked=false", "-artifact-mb", "5"); !slices.Contains(got, "artifact upload (5 MiB)") || slices.Contains(got, "  artifact upload, unknown length") {
		t.Errorf("-artifact-chunked=false -artifact-mb 5: rows %q", got)
	}
	if got := names("-search-tasks", "0", "-base64-uploads", "0"); slices.Contains(got, "8 concurrent 25 MiB base64 uploads: server peak RSS") || len(got) != 8 {
		t.Errorf("-base64-uploads 0: rows %q", got)
	}
	for _, args := range [][]string{{"-artifact-mb", "0"}, {"-artifact-reps", "0"}} {
		if got := names(append(args, "-search-tasks", "0", "-batch-size", "0", "-pickup-tasks", "0")...); len(got) != 2 {
			t.Errorf("%q (skip the artifact figures): rows %q", args, got)
		}
	}
}

func TestArtifactRowsUnit(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	f := newFigures(o)
	f.artifactPut.addBare(200e6)
	f.artifactPut.addTaskrunner(180e6)
	if r := f.artifactPut.row(); r.unit != unitBytes || r.goal != 0.8 || r.ratio() != 0.9 {
		t.Errorf("artifact upload row = %+v, want MB/s, goal 0.8, ratio 0.9", r)
	}
	if r := f.serverRSS.row(); r.memory == nil || r.memory.limit != 100e6 {
		t.Errorf("server RSS row = %+v, want a memory row with a 100 MB limit", r)
	}
	if r := f.base64RSS.row(); r.memory == nil || r.memory.limit != 200e6 {
		t.Errorf("concurrent base64 uploads row = %+v, want a memory row with a 200 MB limit", r)
	}
}

func TestParseOptionsArtifacts(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.artifactMB != 25 || o.artifactReps < 1 || !o.chunked || o.artifactGoal != 0.8 || o.rssGoalMB != 100 || o.taskrunnerBin != "./bin/taskrunner" || !o.artifacts() {
		t.Errorf("defaults: %+v", o)
	}
	for _, args := range [][]string{{"-artifact-mb", "-1"}, {"-artifact-reps", "-1"}, {"-artifact-mb", "100000"}, {"-server-workers", "0"}, {"-server-db-conns", "0"}} {
		if _, err := parseOptions(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

func TestTransferRate(t *testing.T) {
	took := []time.Duration{100 * time.Millisecond, 300 * time.Millisecond}
	if got := transferRate(10e6, took); got != 50e6 {
		t.Errorf("transferRate(10 MB, 100ms+300ms) = %v, want 50e6 bytes/s", got)
	}
	if got := transferRate(10e6, nil); got != 0 {
		t.Errorf("transferRate of nothing = %v, want 0", got)
	}
}

func TestProcStatusBytes(t *testing.T) {
	status := "Name:\ttaskrunner\nVmPeak:\t 1300000 kB\nVmHWM:\t   61234 kB\nVmRSS:\t   40000 kB\nThreads:\t12\n"
	if got, err := procStatusBytes(status, "VmHWM"); err != nil || got != 61234*1024 {
		t.Errorf("VmHWM = %d, %v; want %d", got, err, 61234*1024)
	}
	if got, err := procStatusBytes(status, "VmRSS"); err != nil || got != 40000*1024 {
		t.Errorf("VmRSS = %d, %v; want %d", got, err, 40000*1024)
	}
	for _, field := range []string{"VmSwap", "Threads", "Name", "Vm"} {
		if _, err := procStatusBytes(status, field); err == nil {
			t.Errorf("%s: no error", field)
		}
	}
}

func TestParseLogLine(t *testing.T) {
	ev, ok := parseLogLine(`{"time":"2025-01-01T00:00:00Z","level":"INFO","msg":"api listening","pid":7,"role":"serve","event":"api_listening","addr":"127.0.0.1:41234"}`)
	if !ok || ev.Event != "api_listening" || ev.Addr != "127.0.0.1:41234" || ev.Level != "INFO" {
		t.Errorf("api_listening line = %+v, %v", ev, ok)
	}
	for _, line := range []string{"taskrunner: HTTP_ADDR: bad", "", `{"msg":"no level"}`, `[1,2]`} {
		if _, ok := parseLogLine(line); ok {
			t.Errorf("%q read as a log line", line)
		}
	}
}

// rowNames are the names of figs' rows, in order.
func rowNames(figs *figures) []string {
	var names []string
	for _, r := range figs.rows() {
		names = append(names, r.name)
	}
	return names
}

// The fair-share figure's two rows follow pickup latency, its goal is on
// p99, and it is met only when the fair-share p99 is within it.
func TestFairShareRows(t *testing.T) {
	o, err := parseOptions([]string{"-search-tasks", "0", "-artifact-mb", "0", "-fair-goal", "100ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	figs := newFigures(o)
	names := rowNames(figs)
	want := "single enqueue (16 clients)|batch enqueue of 50 (16 clients)|end-to-end echo (200k)|pickup latency enqueue -> running (50/s)|" +
		"quiet tenant's pickup under a 10s backlog (20/s)|  quiet tenant's pickup, no backlog|callback latency finished -> received (50/s)"
	if got := strings.Join(names, "|"); got != want {
		t.Errorf("rows = %q, want %q", got, want)
	}
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	figs.fair.add([]time.Duration{ms(5), ms(5), ms(150)})
	figs.fair.addBare([]time.Duration{ms(9000), ms(9500)})
	cells := figs.fair.row().cells()
	if cells[4] != "p99 <= 100 ms" || cells[5] != "no" {
		t.Errorf("p99 of 150 ms: goal cells %q, want p99 <= 100 ms, no", cells[4:])
	}
	figs.fair = &latencyFigure{name: "x", maxP99: ms(100), withBare: true}
	figs.fair.add([]time.Duration{ms(5), ms(6)})
	if cells := figs.fair.row().cells(); cells[5] != "yes" {
		t.Errorf("p99 of 6 ms: met %q, want yes", cells[5])
	}
}

// The callback figure's row follows the fair-share ones (here skipped, so
// pickup latency), as in DESIGN.md; it has no bare River
// counterpart (no ratio), its goal is on p50, and -callback-tasks 0 skips
// it.
func TestCallbackRow(t *testing.T) {
	o, err := parseOptions([]string{"-search-tasks", "0", "-artifact-mb", "0", "-fair-tasks", "0", "-callback-rate", "25"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.cbTasks != 500 || o.cbGoal != 50*time.Millisecond || o.cbWarm != time.Second || !o.callbacks() {
		t.Errorf("defaults: %d tasks, goal %s, warm-up %s", o.cbTasks, o.cbGoal, o.cbWarm)
	}
	figs := newFigures(o)
	names := rowNames(figs)
	want := "single enqueue (16 clients)|batch enqueue of 50 (16 clients)|end-to-end echo (200k)|pickup latency enqueue -> running (50/s)|" +
		"callback latency finished -> received (25/s)"
	if got := strings.Join(names, "|"); got != want {
		t.Errorf("rows = %q, want %q", got, want)
	}
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	figs.callback.add([]time.Duration{ms(8), ms(9), ms(40)})
	figs.callback.add([]time.Duration{ms(60), ms(70), ms(90)})
	figs.callback.add([]time.Duration{ms(10), ms(11), ms(30)})
	cells := figs.callback.row().cells()
	if want := []string{"callback latency finished -> received (25/s)", "-", "p50 11.00 ms, p99 40.00 ms", "-", "p50 <= 50 ms", "yes"}; !slices.Equal(cells, want) {
		t.Errorf("cells = %q, want %q", cells, want)
	}
	figs.callback.add([]time.Duration{ms(51)})
	figs.callback.add([]time.Duration{ms(52)})
	if cells := figs.callback.row().cells(); cells[2] != "p50 51.00 ms, p99 51.00 ms" || cells[5] != "no" {
		t.Errorf("median p50 of 51 ms: cells %q, want the goal not met", cells)
	}

	o, err = parseOptions([]string{"-search-tasks", "0", "-artifact-mb", "0", "-fair-tasks", "0", "-callback-tasks", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if names := rowNames(newFigures(o)); slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "callback") }) {
		t.Errorf("-callback-tasks 0: rows %q", names)
	}
	for _, args := range [][]string{{"-callback-tasks", "-1"}, {"-callback-rate", "0"}, {"-callback-rate", "5000"}, {"-callback-warmup", "-1s"}, {"-callback-goal", "-1ms"}} {
		if _, err := parseOptions(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// The rounds table shows each round's ratio to bare River (or value) in
// the order measured, and its min, median and max; a round one side
// missed is n/a and left out of the spread.
func TestWriteRounds(t *testing.T) {
	rate := &figure{name: "single enqueue", goal: 0.8, bare: []float64{100, 100, 200, 100, 100}, taskrunner: []float64{90, 70, 160, 85, 100}}
	pickup := &latencyFigure{name: "pickup", maxP50: 20 * time.Millisecond, withBare: true}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	pickup.add([]time.Duration{ms(4)})
	pickup.add([]time.Duration{ms(5)})
	pickup.addBare([]time.Duration{ms(2)})
	info := &latencyFigure{name: "info"}
	info.add([]time.Duration{ms(3)})
	info.add([]time.Duration{ms(1)})
	info.add([]time.Duration{ms(2)})
	missing := &figure{name: "missed", bare: []float64{100}, taskrunner: []float64{50, 60}}
	peak := &peakFigure{name: "rss"}
	peak.add(61_234_567)
	none := &figure{name: "none"}
	var b strings.Builder
	if err := writeRounds(&b, []row{rate.row(), pickup.row(), info.row(), missing.row(), peak.row(), none.row()}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"figure each round min median max",
		"single enqueue 0.90 0.70 0.80 0.85 1.00 0.70 0.85 1.00",
		"pickup 0.50 n/a 0.50 0.50 0.50",
		"info 3.00 ms 1.00 ms 2.00 ms 1.00 ms 2.00 ms 3.00 ms",
		"missed 0.50 n/a 0.50 0.50 0.50",
		"rss 61.3 MB 61.3 MB 61.3 MB 61.3 MB",
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("rounds table:\n%s\nwant %d lines", b.String(), len(want))
	}
	for i, line := range lines {
		if got := strings.Join(strings.Fields(line), " "); got != want[i] {
			t.Errorf("line %d = %q, want %q", i, got, want[i])
		}
	}
}

// With -scale, the scale rows follow the others: the throughput figures
// with the fill, held to a share of taskrunner's own rate on an empty
// queue (not to the ratio to bare River), pickup with the fill, bytes per
// task (a ceiling on taskrunner / bare River) and pickup during retention
// (a ceiling on p99). Without -scale there are none.
func TestScaleRows(t *testing.T) {
	args := []string{"-search-tasks", "0", "-artifact-mb", "0", "-fair-tasks", "0", "-callback-tasks", "0", "-breakdown"}
	o, err := parseOptions(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if figs := newFigures(o); figs.atScale != nil || slices.ContainsFunc(rowNames(figs), func(n string) bool { return strings.Contains(n, "queued") }) {
		t.Errorf("without -scale: rows %q", rowNames(figs))
	}
	o, err = parseOptions(append(args, "-scale", "1000000"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.rounds != 5 || o.scaleGoal != 0.8 || o.bytesGoal != 1.5 || o.retentionGoal != 100*time.Millisecond || o.retRounds != 1 {
		t.Errorf("defaults: %d rounds, scale goal %v, bytes goal %v, retention goal %s, %d retention rounds", o.rounds, o.scaleGoal, o.bytesGoal, o.retentionGoal, o.retRounds)
	}
	figs := newFigures(o)
	want := "single enqueue (16 clients)|  breakdown: Service.Submit, no HTTP|  breakdown: POST /tasks, each its own insert|batch enqueue of 50 (16 clients)|end-to-end echo (200k)|  breakdown: echo, no RunRecorder|" +
		"pickup latency enqueue -> running (50/s)|" +
		"single enqueue (16 clients), 1M queued|batch enqueue of 50 (16 clients), 1M queued|end-to-end echo (200k), 1M queued|" +
		"pickup latency enqueue -> running (50/s), 1M queued|bytes on disk per finished task|pickup during retention of 1M finished (50/s)"
	if got := strings.Join(rowNames(figs), "|"); got != want {
		t.Errorf("rows = %q, want %q", got, want)
	}
	if figs.atScale.opts.breakdown || figs.atScale.opts.scaled() {
		t.Error("the figures with the fill would measure the breakdown or the scale figures again")
	}

	// Empty queue: taskrunner 1000/s in the median round; with the fill
	// 790/s (0.79 of empty: not met, though 0.99 of bare River) and 800/s.
	for _, r := range []float64{900, 1000, 1100} {
		figs.enqueue.addBare(1000)
		figs.enqueue.addTaskrunner(r)
		figs.endToEnd.addBare(1000)
		figs.endToEnd.addTaskrunner(r)
	}
	figs.atScale.enqueue.addBare(800)
	figs.atScale.enqueue.addTaskrunner(790)
	figs.atScale.endToEnd.addBare(2000)
	figs.atScale.endToEnd.addTaskrunner(800)
	figs.bytes.addBare(400)
	figs.bytes.addTaskrunner(601)
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	figs.retention.addBare([]time.Duration{ms(2), ms(30)})
	figs.retention.add([]time.Duration{ms(3), ms(101)})
	cells := map[string][]string{}
	for _, r := range figs.rows() {
		cells[r.name] = r.cells()
	}
	checks := map[string][]string{
		"single enqueue (16 clients), 1M queued":        {"800/s", "790/s", "0.98", "0.79 of empty, >= 0.8", "no"},
		"end-to-end echo (200k), 1M queued":             {"2000/s", "800/s", "0.40", "0.80 of empty, >= 0.8", "yes"},
		"bytes on disk per finished task":               {"400 B", "601 B", "1.51", "<= 1.5", "no"},
		"pickup during retention of 1M finished (50/s)": {"p50 2.00 ms, p99 30.00 ms", "p50 3.00 ms, p99 101.00 ms", "0.66", "p99 <= 100 ms", "no"},
		"batch enqueue of 50 (16 clients), 1M queued":   {"n/a", "n/a", "n/a", "n/a of empty, >= 0.8", "no"},
	}
	for name, want := range checks {
		if got := cells[name]; len(got) != 6 || !slices.Equal(got[1:], want) {
			t.Errorf("%s: cells %q, want %q", name, got, want)
		}
	}
	figs.bytes = &bytesFigure{name: "b", maxRatio: 1.5}
	figs.bytes.addBare(400)
	figs.bytes.addTaskrunner(600)
	if c := figs.bytes.row().cells(); c[3] != "1.50" || c[5] != "yes" {
		t.Errorf("600 B / 400 B: cells %q, want 1.50 and met", c)
	}
	if c := (&bytesFigure{name: "b", maxRatio: 1.5}).row().cells(); !slices.Equal(c[1:], []string{"n/a", "n/a", "n/a", "<= 1.5", "no"}) {
		t.Errorf("unmeasured: cells %q", c)
	}
	for _, bad := range [][]string{{"-scale", "-1"}, {"-retention-rounds", "0"}, {"-retention-timeout", "0s"}, {"-bytes-goal", "-1"}} {
		if _, err := parseOptions(bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The table's ratio is the median of the rounds' ratios, each round's two
// sides paired, not the ratio of each side's median: with bare River at
// 10, 20, 30 and taskrunner at 9, 10, 29 a round, the ratios are 0.9,
// 0.5 and 0.97, whose median is 0.9, where the medians' ratio is 10/20.
func TestRateRatioIsTheMedianOfTheRoundsRatios(t *testing.T) {
	f := figure{name: "end-to-end", goal: 0.8}
	for i, bare := range []float64{10, 20, 30} {
		f.addBare(bare)
		f.addTaskrunner([]float64{9, 10, 29}[i])
	}
	r := f.row()
	if got := r.ratio(); math.Abs(got-0.9) > 1e-9 {
		t.Fatalf("ratio = %v, want 0.9, the median of the rounds' ratios", got)
	}
	if cells := r.cells(); cells[3] != "0.90" || cells[5] != "yes" {
		t.Errorf("cells = %q, want ratio 0.90 and the goal met", cells)
	}
	// A round bare River missed is left out, not counted as 0.
	f.addBare(0)
	f.addTaskrunner(5)
	if got := f.row().ratio(); math.Abs(got-0.9) > 1e-9 {
		t.Errorf("ratio with a round bare River missed = %v, want 0.9", got)
	}
}
