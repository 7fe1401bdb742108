package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/oxios/oxios/internal/oxios"
)

func cronPath(name, rest string) string {
	return "/api/v1/cron/" + url.PathEscape(name) + rest
}

// CronJob is what CreateCron sends.
type CronJob struct {
	Name     string     `json:"name"`
	Schedule string     `json:"schedule"`
	Zone     string     `json:"zone,omitempty"`
	Overlap  string     `json:"overlap,omitempty"`
	Missed   string     `json:"missed,omitempty"`
	Enabled  *bool      `json:"enabled,omitempty"`
	Spec     oxios.Spec `json:"spec"`
}

// CreateCron adds a cron job.
func (c *Client) CreateCron(ctx context.Context, j CronJob) (oxios.CronStatus, error) {
	var out oxios.CronStatus
	err := c.do(ctx, http.MethodPost, "/api/v1/cron", j, &out)
	return out, err
}

// CronJobs lists the cron jobs.
func (c *Client) CronJobs(ctx context.Context) ([]oxios.CronStatus, error) {
	var out struct {
		Items []oxios.CronStatus `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/cron", nil, &out)
	return out.Items, err
}

// CronJob returns one cron job with its recent runs.
func (c *Client) CronJob(ctx context.Context, name string) (oxios.CronStatus, error) {
	var out oxios.CronStatus
	err := c.do(ctx, http.MethodGet, cronPath(name, ""), nil, &out)
	return out, err
}

// DeleteCron removes a cron job.
func (c *Client) DeleteCron(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, cronPath(name, ""), nil, nil)
}

// SetCronEnabled enables or disables a cron job.
func (c *Client) SetCronEnabled(ctx context.Context, name string, on bool) (oxios.CronStatus, error) {
	var out oxios.CronStatus
	rest := "/disable"
	if on {
		rest = "/enable"
	}
	err := c.do(ctx, http.MethodPost, cronPath(name, rest), nil, &out)
	return out, err
}

// TriggerCron fires a cron job now.
func (c *Client) TriggerCron(ctx context.Context, name string) (oxios.CronFired, error) {
	var out oxios.CronFired
	err := c.do(ctx, http.MethodPost, cronPath(name, "/trigger"), nil, &out)
	return out, err
}
