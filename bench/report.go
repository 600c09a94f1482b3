package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one line of the final table: a rate figure beside bare River's
// (or bare minio-go's); when latency is set, a latency figure, with or
// without bare River's beside it; when memory is set, a figure of
// taskrunner's alone that has no bare counterpart.
type row struct {
	name       string
	bare       float64 // per second: operations, or bytes when unit is unitBytes
	taskrunner float64 // per second, as bare
	unit       rateUnit
	goal       float64 // minimum ratio; 0 for none
	// With vsEmpty, ofEmpty is the same figure's taskrunner rate on an
	// empty queue (NaN when not measured): the goal is then on
	// taskrunner / ofEmpty, not on the ratio to bare River.
	vsEmpty bool
	ofEmpty float64
	latency *latencyRow
	memory  *memoryRow
	bytes   *bytesRow
	// rounds is the figure's value in each round, as the rounds table
	// shows it (see spread).
	rounds *spread
}

// bytesRow is a size figure beside bare River's: bytes on disk per
// finished task, negative when not measured, with a ceiling on the ratio
// taskrunner / bare River (here lower is better).
type bytesRow struct {
	bare, taskrunner float64
	maxRatio         float64 // 0 for no goal
}

// ratio is taskrunner / bare River, or NaN when either side measured
// nothing.
func (b *bytesRow) ratio() float64 {
	if b.bare <= 0 || b.taskrunner < 0 {
		return math.NaN()
	}
	return b.taskrunner / b.bare
}

// spread is a figure's value in each round, in the order measured: the
// ratio to bare River where there is one (as the table's ratio column
// counts it), otherwise taskrunner's own value, formatted by format.
type spread struct {
	values []float64
	format func(float64) string
}

// rateUnit is what a rate row counts per second.
type rateUnit int

const (
	unitOps   rateUnit = iota // operations: "8123/s"
	unitBytes                 // bytes, shown in MB/s (10^6 bytes): "245.3 MB/s"
)

// memoryRow is a memory figure of taskrunner's alone: a peak in bytes,
// negative when nothing was measured, and a ceiling as its goal.
type memoryRow struct {
	peak  int64
	limit int64 // bytes; 0 for no goal
}

// latencyRow is a latency figure: taskrunner's p50 and p99, negative when
// nothing was measured, and a ceiling on p50 as its goal; with hasBare,
// bare River's p50 and p99 beside them (negative when not measured), and
// the ratio of the p50s, bare River / taskrunner, so that as for the rates
// 1 is parity and above 1 is taskrunner ahead.
type latencyRow struct {
	p50, p99         time.Duration
	maxP50           time.Duration // 0 for no goal
	maxP99           time.Duration // 0 for no goal on p99
	hasBare          bool
	bareP50, bareP99 time.Duration
}

// ratio is bare River's p50 / taskrunner's, or NaN when either side
// measured nothing or taskrunner's p50 is 0.
func (l *latencyRow) ratio() float64 {
	if !l.hasBare || l.bareP50 < 0 || l.p50 <= 0 {
		return math.NaN()
	}
	return float64(l.bareP50) / float64(l.p50)
}

// ratio is the median of the rounds' ratios taskrunner / bare River (the
// figure the rounds table shows), or without rounds the ratio of the two
// sides' rates; NaN when bare River measured nothing. The median of the
// ratios pairs each round's two sides, measured one after the other on
// the same machine, where a ratio of the two medians could pair a fast
// round of one side with a slow round of the other.
func (r row) ratio() float64 {
	if r.bare <= 0 {
		return math.NaN()
	}
	if r.rounds != nil {
		if measured := slices.DeleteFunc(slices.Clone(r.rounds.values), math.IsNaN); len(measured) > 0 {
			return median(measured)
		}
	}
	return r.taskrunner / r.bare
}

// cells are the row's columns: figure, bare River, taskrunner, ratio, goal
// and whether it is met.
func (r row) cells() []string {
	if l := r.latency; l != nil {
		goal, met := "-", "-"
		if l.maxP50 > 0 {
			goal = "p50 <= " + strconv.FormatFloat(float64(l.maxP50)/float64(time.Millisecond), 'f', -1, 64) + " ms"
			met = "no"
			if l.p50 >= 0 && l.p50 <= l.maxP50 {
				met = "yes"
			}
		}
		if l.maxP99 > 0 {
			goal = "p99 <= " + strconv.FormatFloat(float64(l.maxP99)/float64(time.Millisecond), 'f', -1, 64) + " ms"
			met = "no"
			if l.p99 >= 0 && l.p99 <= l.maxP99 {
				met = "yes"
			}
		}
		measured := formatPercentiles(l.p50, l.p99)
		if !l.hasBare {
			return []string{r.name, "-", measured, "-", goal, met}
		}
		return []string{r.name, formatPercentiles(l.bareP50, l.bareP99), measured, formatRatio(l.ratio()), goal, met}
	}
	if b := r.bytes; b != nil {
		goal, met := "-", "-"
		if b.maxRatio > 0 {
			goal = "<= " + strconv.FormatFloat(b.maxRatio, 'f', -1, 64)
			met = "no"
			if b.ratio() <= b.maxRatio {
				met = "yes"
			}
		}
		return []string{r.name, formatBytes(b.bare), formatBytes(b.taskrunner), formatRatioUp(b.ratio()), goal, met}
	}
	if m := r.memory; m != nil {
		goal, met := "-", "-"
		if m.limit > 0 {
			goal = "< " + strconv.FormatFloat(float64(m.limit)/1e6, 'f', -1, 64) + " MB"
			met = "no"
			if m.peak >= 0 && m.peak < m.limit {
				met = "yes"
			}
		}
		return []string{r.name, "-", formatMB(m.peak), "-", goal, met}
	}
	format := formatRate
	if r.unit == unitBytes {
		format = formatMBps
	}
	goal, met := "-", "-"
	switch {
	case r.goal > 0 && r.vsEmpty:
		of := math.NaN()
		if r.ofEmpty > 0 {
			of = r.taskrunner / r.ofEmpty
		}
		goal = formatRatio(of) + " of empty, >= " + strconv.FormatFloat(r.goal, 'f', -1, 64)
		met = "no"
		if of >= r.goal {
			met = "yes"
		}
	case r.goal > 0:
		goal = ">= " + strconv.FormatFloat(r.goal, 'f', -1, 64)
		met = "no"
		if r.ratio() >= r.goal {
			met = "yes"
		}
	}
	return []string{r.name, format(r.bare), format(r.taskrunner), formatRatio(r.ratio()), goal, met}
}

// writeTable writes the rows as an aligned table, with whether each goal
// is met.
func writeTable(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "figure\tbare River\ttaskrunner\tratio\tgoal\tmet")
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// writeRounds writes, for every row measured in more than one round, its
// value in each round (the ratio to bare River where there is one) and
// their spread: min, median and max.
func writeRounds(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "figure\teach round\tmin\tmedian\tmax")
	for _, r := range rows {
		if r.rounds == nil || len(r.rounds.values) == 0 {
			continue
		}
		f, vs := r.rounds.format, r.rounds.values
		each := make([]string, len(vs))
		for i, v := range vs {
			each[i] = f(v)
		}
		lo, mid, hi := math.NaN(), math.NaN(), math.NaN()
		if measured := slices.DeleteFunc(slices.Clone(vs), math.IsNaN); len(measured) > 0 {
			lo, mid, hi = slices.Min(measured), median(measured), slices.Max(measured)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.name, strings.Join(each, " "), f(lo), f(mid), f(hi))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write rounds: %w", err)
	}
	return nil
}

// ratios is a/b for each round both measured; a round either side
// missed, or where b is not above 0, is NaN.
func ratios(a, b []float64) []float64 {
	out := make([]float64, max(len(a), len(b)))
	for i := range out {
		out[i] = math.NaN()
		if i < len(a) && i < len(b) && b[i] > 0 {
			out[i] = a[i] / b[i]
		}
	}
	return out
}

// formatMillis formats nanoseconds as the table shows a latency.
func formatMillis(ns float64) string {
	if math.IsNaN(ns) {
		return "n/a"
	}
	return formatTableLatency(time.Duration(ns))
}

// formatBytes formats a size in bytes, whole: "412 B"; "n/a" when
// negative or not a number (not measured).
func formatBytes(b float64) string {
	if math.IsNaN(b) || b < 0 {
		return "n/a"
	}
	return strconv.FormatFloat(math.Round(b), 'f', 0, 64) + " B"
}

// formatRatioUp formats a ratio where lower is better with two decimals,
// rounded up, so that a ratio shown as within a ceiling is within it.
func formatRatioUp(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(math.Ceil(r*100)/100, 'f', 2, 64)
}

// formatRate formats a rate per second to the unit: "8123/s".
func formatRate(perSecond float64) string {
	if math.IsNaN(perSecond) || math.IsInf(perSecond, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(math.Round(perSecond), 'f', 0, 64) + "/s"
}

// formatMBps formats bytes per second in MB/s (10^6 bytes) with one
// decimal: "245.3 MB/s".
func formatMBps(bytesPerSecond float64) string {
	if math.IsNaN(bytesPerSecond) || math.IsInf(bytesPerSecond, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(bytesPerSecond/1e6, 'f', 1, 64) + " MB/s"
}

// formatMB formats a number of bytes in MB (10^6 bytes) with one decimal,
// rounded up, so that a figure shown as within a ceiling is within it;
// "n/a" when negative (not measured).
func formatMB(bytes int64) string {
	if bytes < 0 {
		return "n/a"
	}
	tenths := (bytes + 100_000 - 1) / 100_000
	return strconv.FormatFloat(float64(tenths)/10, 'f', 1, 64) + " MB"
}

// formatRatio formats a ratio with two decimals, rounded down, so that a
// ratio shown as reaching a goal does reach it (0.797 is 0.79, not 0.80).
func formatRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(math.Floor(r*100)/100, 'f', 2, 64)
}

// formatLatency formats a latency in milliseconds with two decimals.
func formatLatency(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
}

// formatTableLatency formats a latency for the table in milliseconds with
// two decimals, rounded up, so that a latency shown as within a goal is
// within it (2.001 ms is 2.01 ms); "n/a" when negative (not measured).
func formatTableLatency(d time.Duration) string {
	if d < 0 {
		return "n/a"
	}
	hundredths := (d + 10*time.Microsecond - 1) / (10 * time.Microsecond)
	return strconv.FormatFloat(float64(hundredths)/100, 'f', 2, 64) + " ms"
}

// formatPercentiles is a p50 and p99 as the table shows them:
// "p50 0.62 ms, p99 1.80 ms".
func formatPercentiles(p50, p99 time.Duration) string {
	return "p50 " + formatTableLatency(p50) + ", p99 " + formatTableLatency(p99)
}

// formatPerSecond formats a rate given on the command line, as short as
// it goes: 50, 12.5.
func formatPerSecond(perSecond float64) string {
	return strconv.FormatFloat(perSecond, 'f', -1, 64)
}

// countLabel is a job count as the table names it: 20000 is "20k",
// 1000000 is "1M".
func countLabel(n int) string {
	if n >= 1_000_000 && n%1_000_000 == 0 {
		return strconv.Itoa(n/1_000_000) + "M"
	}
	if n >= 1000 && n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// percentile returns the q-quantile (0 <= q <= 1) of ds by the nearest-rank
// method: the smallest value at least q of the values are at or below.
// It returns 0 for no values, and does not modify ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// median returns the median of xs (the mean of the middle two for an even
// count), or NaN for none. It does not modify xs.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	mid := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[mid]
	}
	return (sorted[mid-1] + sorted[mid]) / 2
}
