package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/taskrunner/taskrunner/task"
)

// searchRequest is a POST /search body: the search params and the task options.
type searchRequest struct {
	Query          *string  `json:"query"`
	Sources        []string `json:"sources"`
	RecencyDays    *int     `json:"recency_days"`
	MaxResults     *int     `json:"max_results"`
	TimeoutSeconds *float64 `json:"timeout_seconds"`
	MaxRetries     *int     `json:"max_retries"`
	CallbackURL    *string  `json:"callback_url"`
}

// decodeSearchRequest turns a POST /search body into a search task request.
func decodeSearchRequest(body []byte) (*task.Request, error) {
	var sr searchRequest
	if err := decodeStrict(body, &sr); err != nil {
		return nil, err
	}
	params, err := json.Marshal(struct {
		Query       *string  `json:"query,omitempty"`
		Sources     []string `json:"sources,omitempty"`
		RecencyDays *int     `json:"recency_days,omitempty"`
		MaxResults  *int     `json:"max_results,omitempty"`
	}{sr.Query, sr.Sources, sr.RecencyDays, sr.MaxResults})
	if err != nil {
		return nil, err
	}
	return &task.Request{Type: "search", Params: params, TimeoutSeconds: sr.TimeoutSeconds, MaxRetries: sr.MaxRetries,
		CallbackURL: sr.CallbackURL, ParamsInBody: true}, nil
}

// submitSearch enqueues a search task; its result is the merged answer.
func (s *Server) submitSearch(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r, s.deps.Limits.MaxRequestBodyBytes)
	if err != nil {
		return err
	}
	req, err := decodeSearchRequest(body)
	if err != nil {
		return err
	}
	return s.enqueue(w, r, req)
}
