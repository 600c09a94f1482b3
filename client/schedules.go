package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Schedule is a schedule as the API shows it; LastTaskIDs only from
// Schedule and CreateSchedule.
type Schedule struct {
	Name       string          `json:"name"`
	Owner      string          `json:"owner"`
	Cron       *string         `json:"cron"`
	Every      *string         `json:"every"`
	TimeZone   *string         `json:"time_zone"`
	Missed     string          `json:"missed"`
	Paused     bool            `json:"paused"`
	Task       json.RawMessage `json:"task"`
	NextRuns   []time.Time     `json:"next_runs"`
	LastTickAt *time.Time      `json:"last_tick_at"`
	// SkippedTicks counts the ticks skipped because the owner's enqueue
	// limit was used up; LastSkippedAt is the latest of them.
	SkippedTicks  int64      `json:"skipped_ticks"`
	LastSkippedAt *time.Time `json:"last_skipped_at"`
	CreatedAt     time.Time  `json:"created_at"`
	LastTaskIDs   []int64    `json:"last_task_ids,omitempty"`
	// Raw is the answer as received.
	Raw json.RawMessage `json:"-"`
}

// ScheduleRequest is a new schedule: a name, exactly one of Cron (five
// fields, in TimeZone) and Every (a duration such as "30s"), and the task
// to enqueue at each tick.
type ScheduleRequest struct {
	Name     string `json:"name"`
	Cron     string `json:"cron,omitempty"`
	TimeZone string `json:"time_zone,omitempty"`
	Every    string `json:"every,omitempty"`
	// Missed is "run_once" (the server's default when empty) or "skip".
	Missed string        `json:"missed,omitempty"`
	Task   SubmitRequest `json:"task"`
}

// ScheduleList is a page of schedules.
type ScheduleList struct {
	Schedules  []Schedule `json:"schedules"`
	NextCursor *string    `json:"next_cursor"`
}

// CreateSchedule creates a schedule and returns it.
func (c *Client) CreateSchedule(ctx context.Context, req ScheduleRequest) (*Schedule, error) {
	buf, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	return c.scheduleCall(ctx, http.MethodPost, "/schedules", bytes.NewReader(buf))
}

// Schedules returns a page of the caller's schedules (every tenant's for
// an admin), after cursor ("" for the first page).
func (c *Client) Schedules(ctx context.Context, cursor string) (*ScheduleList, error) {
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	path := "/schedules"
	if cursor != "" {
		path += "?cursor=" + url.QueryEscape(cursor)
	}
	var l ScheduleList
	var raw json.RawMessage
	if err := c.doJSON(ctx, http.MethodGet, path, nil, nil, &l, &raw); err != nil {
		return nil, err
	}
	return &l, nil
}

// Schedule returns the schedule name, with its next runs and its latest
// task ids.
func (c *Client) Schedule(ctx context.Context, name string) (*Schedule, error) {
	return c.scheduleCall(ctx, http.MethodGet, schedulePath(name), nil)
}

// PauseSchedule pauses the schedule name: it enqueues nothing until
// resumed.
func (c *Client) PauseSchedule(ctx context.Context, name string) (*Schedule, error) {
	return c.scheduleCall(ctx, http.MethodPost, schedulePath(name)+"/pause", nil)
}

// ResumeSchedule resumes the schedule name from its next tick.
func (c *Client) ResumeSchedule(ctx context.Context, name string) (*Schedule, error) {
	return c.scheduleCall(ctx, http.MethodPost, schedulePath(name)+"/resume", nil)
}

// DeleteSchedule deletes the schedule name for good.
func (c *Client) DeleteSchedule(ctx context.Context, name string) error {
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	return c.doJSON(ctx, http.MethodDelete, schedulePath(name), nil, nil, nil, nil)
}

func (c *Client) scheduleCall(ctx context.Context, method, path string, body *bytes.Reader) (*Schedule, error) {
	ctx, cancel := c.plainTimeout(ctx)
	defer cancel()
	var s Schedule
	var err error
	if body != nil {
		err = c.doJSON(ctx, method, path, body, nil, &s, &s.Raw)
	} else {
		err = c.doJSON(ctx, method, path, nil, nil, &s, &s.Raw)
	}
	if err != nil {
		return nil, err
	}
	return &s, nil
}

func schedulePath(name string) string { return "/schedules/" + url.PathEscape(name) }
