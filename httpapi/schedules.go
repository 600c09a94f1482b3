package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/schedule"
)

// scheduleView is a schedule as the API shows it.
type scheduleView struct {
	Name     string          `json:"name"`
	Owner    string          `json:"owner"`
	Cron     *string         `json:"cron"`
	Every    *string         `json:"every"`
	TimeZone *string         `json:"time_zone"`
	Missed   string          `json:"missed"`
	Paused   bool            `json:"paused"`
	Task     json.RawMessage `json:"task"`
	// NextRuns are the next ticks; none while paused.
	NextRuns   []time.Time `json:"next_runs"`
	LastTickAt *time.Time  `json:"last_tick_at"`
	// SkippedTicks are the ticks that enqueued no task because the
	// owner's enqueue limit was used up; LastSkippedAt the latest.
	SkippedTicks  int64      `json:"skipped_ticks"`
	LastSkippedAt *time.Time `json:"last_skipped_at"`
	CreatedAt     time.Time  `json:"created_at"`
}

// scheduleDetailView is one schedule with the ids of its newest tasks,
// newest first.
type scheduleDetailView struct {
	scheduleView
	LastTaskIDs []int64 `json:"last_task_ids"`
}

func scheduleDetailViewOf(d *schedule.Detail) scheduleDetailView {
	v := scheduleDetailView{scheduleView: scheduleViewOf(d), LastTaskIDs: d.LastTaskIDs}
	if v.LastTaskIDs == nil {
		v.LastTaskIDs = []int64{}
	}
	return v
}

func scheduleViewOf(d *schedule.Detail) scheduleView {
	v := scheduleView{Name: d.Name, Owner: d.Owner, Missed: d.Missed, Paused: d.Paused, Task: d.Task,
		NextRuns: d.NextRuns, LastTickAt: d.LastTickAt, SkippedTicks: d.SkippedTicks, LastSkippedAt: d.LastSkippedAt, CreatedAt: d.CreatedAt}
	if d.Cron != "" {
		v.Cron, v.TimeZone = &d.Cron, &d.TimeZone
	} else {
		every := d.Every.String()
		v.Every = &every
	}
	return v
}

// schedulesOrError is the schedule service, or the refusal of a process
// built without one.
func (s *Server) schedulesOrError() (*schedule.Service, error) {
	if s.deps.Schedules == nil {
		return nil, taskrunner.Errorf(taskrunner.CodeNotFound, "this server does not serve schedules")
	}
	return s.deps.Schedules, nil
}

// decodeScheduleRequest decodes a POST /schedules body.
func decodeScheduleRequest(body []byte) (*schedule.Request, error) {
	var req schedule.Request
	if err := decodeStrict(body, &req); err != nil {
		return nil, err
	}
	return &req, nil
}

func (s *Server) createSchedule(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.schedulesOrError()
	if err != nil {
		return err
	}
	body, err := readBody(r, s.deps.Limits.MaxRequestBodyBytes)
	if err != nil {
		return err
	}
	req, err := decodeScheduleRequest(body)
	if err != nil {
		return err
	}
	sch, err := svc.Create(r.Context(), req)
	if err != nil {
		return err
	}
	d, err := svc.Get(r.Context(), sch.Owner, sch.Name)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/schedules/"+url.PathEscape(sch.Name))
	writeJSON(w, http.StatusCreated, scheduleDetailViewOf(d))
	return nil
}

type scheduleListBody struct {
	Schedules  []json.RawMessage `json:"schedules"` // each an encoded scheduleView
	NextCursor *string           `json:"next_cursor"`
}

// A page of GET /schedules is capped in bytes as a page of GET /tasks is
// (maxListBytes): once its schedules' encoding passes the cap, the page
// ends with a next_cursor, however many the limit allowed.
func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.schedulesOrError()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	lq := schedule.ListQuery{Owner: q.Get("owner"), Cursor: q.Get("cursor")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 {
			return taskrunner.Invalid("limit", "must be a positive whole number")
		}
		lq.Limit = n
	}
	body := scheduleListBody{Schedules: []json.RawMessage{}}
	size := 0
	next, err := svc.List(r.Context(), lq, func(d *schedule.Detail) (bool, error) {
		enc, err := json.Marshal(scheduleViewOf(d))
		if err != nil {
			return false, err
		}
		body.Schedules = append(body.Schedules, enc)
		size += len(enc)
		return size < maxListBytes, nil
	})
	if err != nil {
		return err
	}
	if next != "" {
		body.NextCursor = &next
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.schedulesOrError()
	if err != nil {
		return err
	}
	d, err := svc.Get(r.Context(), r.URL.Query().Get("owner"), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, scheduleDetailViewOf(d))
	return nil
}

func (s *Server) pauseSchedule(w http.ResponseWriter, r *http.Request) error {
	return s.setSchedulePaused(w, r, true)
}

func (s *Server) resumeSchedule(w http.ResponseWriter, r *http.Request) error {
	return s.setSchedulePaused(w, r, false)
}

func (s *Server) setSchedulePaused(w http.ResponseWriter, r *http.Request, paused bool) error {
	svc, err := s.schedulesOrError()
	if err != nil {
		return err
	}
	d, err := svc.SetPaused(r.Context(), r.URL.Query().Get("owner"), chi.URLParam(r, "name"), paused)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, scheduleViewOf(d))
	return nil
}

func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.schedulesOrError()
	if err != nil {
		return err
	}
	if err := svc.Delete(r.Context(), r.URL.Query().Get("owner"), chi.URLParam(r, "name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
