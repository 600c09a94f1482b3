package schedule

import (
	"fmt"
	"math/bits"
	"strings"
	"time"
	_ "time/tzdata" // time zones resolve in images without a zoneinfo database

	"github.com/robfig/cron/v3"

	"github.com/taskrunner/taskrunner"
)

// Bounds of a schedule's interval (every).
const (
	MinEvery = time.Second
	MaxEvery = 366 * 24 * time.Hour
)

// maxSpecLength bounds a cron expression and a time zone name.
const maxSpecLength = 128

// cronParser takes exactly five fields (minute, hour, day of month, month,
// day of week) and no descriptors such as @hourly.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// Timing is when a schedule ticks: the times of a cron expression in a
// time zone, or the multiples of an interval since the Unix epoch, so that
// every process computes the same ticks.
type Timing struct {
	cron  *cron.SpecSchedule // nil for an interval
	every time.Duration
}

// ParseTiming parses a schedule's cron expression (five fields, in the
// time zone tz, UTC when empty) or its interval every (a Go duration of
// whole seconds, from MinEvery to MaxEvery): exactly one of them is set.
// Refusals are task_rejected_invalid_params naming the field.
func ParseTiming(cronExpr, every, tz string) (Timing, error) {
	loc, err := location(tz)
	if err != nil {
		return Timing{}, err
	}
	switch {
	case cronExpr != "" && every != "":
		return Timing{}, taskrunner.Invalid("cron", "and every cannot both be set; give one")
	case cronExpr != "":
		return parseCron(cronExpr, loc)
	case every != "":
		if tz != "" {
			return Timing{}, taskrunner.Invalid("time_zone", "applies to cron only; an interval (every) is the same in every time zone")
		}
		return parseEvery(every)
	}
	return Timing{}, taskrunner.Invalid("cron", "or every is required")
}

// location is the time zone named tz: UTC when empty.
func location(tz string) (*time.Location, error) {
	if tz == "" {
		return time.UTC, nil
	}
	// Local would be the server's zone, which no client can know.
	if len(tz) > maxSpecLength || tz == "Local" {
		return nil, taskrunner.Invalid("time_zone", "must be an IANA time zone name such as Europe/Paris")
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, taskrunner.Invalid("time_zone", "must be an IANA time zone name such as Europe/Paris")
	}
	return loc, nil
}

func parseCron(expr string, loc *time.Location) (t Timing, err error) {
	invalid := func(why string) error {
		return taskrunner.Invalid("cron", "must be five fields (minute hour day-of-month month day-of-week), such as \"*/5 * * * *\": %s", why)
	}
	if len(expr) > maxSpecLength {
		return Timing{}, invalid("too long")
	}
	// The parser reads a TZ= prefix of its own (and fails hard on some);
	// the time zone is time_zone's.
	if strings.Contains(expr, "=") || strings.HasPrefix(strings.TrimSpace(expr), "@") {
		return Timing{}, invalid("no TZ= prefix or @descriptor; set time_zone instead")
	}
	if n := len(strings.Fields(expr)); n != 5 {
		return Timing{}, invalid(fmt.Sprintf("got %d", n))
	}
	defer func() {
		if recover() != nil {
			t, err = Timing{}, invalid("it could not be parsed")
		}
	}()
	s, perr := cronParser.Parse(expr)
	if perr != nil {
		return Timing{}, invalid(perr.Error())
	}
	spec, ok := s.(*cron.SpecSchedule)
	if !ok {
		return Timing{}, invalid("it could not be parsed")
	}
	spec.Location = loc
	t = Timing{cron: spec}
	if t.Next(time.Now()).IsZero() {
		return Timing{}, invalid("it names no time in the next five years")
	}
	return t, nil
}

func parseEvery(every string) (Timing, error) {
	d, err := time.ParseDuration(every)
	switch {
	case err != nil:
		return Timing{}, taskrunner.Invalid("every", "must be a duration such as \"30s\", \"5m\" or \"1h30m\"")
	case d < MinEvery || d > MaxEvery:
		return Timing{}, taskrunner.Invalid("every", "must be from %s to %s", MinEvery, MaxEvery)
	case d%time.Second != 0:
		return Timing{}, taskrunner.Invalid("every", "must be a whole number of seconds")
	}
	return Timing{every: d}, nil
}

// TimingOf is the timing of a stored schedule.
func TimingOf(s *taskrunner.Schedule) (Timing, error) {
	if s.Cron != "" {
		loc, err := location(s.TimeZone)
		if err != nil {
			return Timing{}, err
		}
		return parseCron(s.Cron, loc)
	}
	return parseEvery(s.Every.String())
}

// TicksPerMinute is how often the timing ticks at most, a minute, over
// any hour: 60 / every for an interval; for a cron expression, the
// minutes its minute field names (the most ticks it makes in any one
// hour) over 60. So "* * * * *" ticks 1 a minute, "*/5 9-17 * * *" 0.2,
// and "0 3 * * *" 1/60, however rarely its hour comes.
func (t Timing) TicksPerMinute() float64 {
	if t.cron == nil {
		return float64(time.Minute) / float64(t.every)
	}
	return float64(bits.OnesCount64(t.cron.Minute&^cronStarBit)) / 60
}

// cronStarBit is the bit robfig/cron sets in a field written "*".
const cronStarBit = 1 << 63

// Next is the first tick strictly after t; zero when there is none in the
// next five years (a cron expression such as "0 0 30 2 *").
func (t Timing) Next(after time.Time) time.Time {
	if t.cron == nil {
		return t.Prev(after).Add(t.every)
	}
	return t.cron.Next(after)
}

// prevWindows are how far back Prev looks for a cron expression's latest
// tick, each tried in turn: a short one first, so a frequent schedule
// steps through few ticks.
var prevWindows = []time.Duration{
	2 * time.Minute, time.Hour, 25 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour, 5 * 367 * 24 * time.Hour,
}

// Prev is the latest tick at or before at; zero when there is none in the
// five years before.
func (t Timing) Prev(at time.Time) time.Time {
	if t.cron == nil {
		step := int64(t.every / time.Second)
		secs := at.Unix()
		mod := secs % step
		if mod < 0 {
			mod += step
		}
		return time.Unix(secs-mod, 0).UTC()
	}
	for _, w := range prevWindows {
		tick := t.cron.Next(at.Add(-w))
		if tick.IsZero() || tick.After(at) {
			continue
		}
		for {
			next := t.cron.Next(tick)
			if next.IsZero() || next.After(at) {
				return tick
			}
			tick = next
		}
	}
	return time.Time{}
}

// NextN are the first n ticks strictly after t.
func (t Timing) NextN(after time.Time, n int) []time.Time {
	out := make([]time.Time, 0, n)
	for range n {
		after = t.Next(after)
		if after.IsZero() {
			break
		}
		out = append(out, after)
	}
	return out
}
