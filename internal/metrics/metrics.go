// Package metrics holds the daemon's Prometheus metrics. The parts count
// into these collectors directly; the gauges of state (agents by state, the
// scheduler, storage) are read at each scrape from the parts that know it.
// GET /metrics serves Registry.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Registry holds every oxios metric plus the Go runtime's and the process's.
var Registry = prometheus.NewRegistry()

var (
	Spawns = counterVec("oxios_agent_spawns_total", "Agents spawned.", "kind")
	Exits  = counterVec("oxios_agent_exits_total", "Agent runs that ended, by how they ended (succeeded, failed, killed).", "kind", "outcome")
	// Restarts counts restarts by the restart policy and by request.
	Restarts = counterVec("oxios_agent_restarts_total", "Agent restarts (by policy or request).", "kind")

	LLMRequests = counterVec("oxios_llm_requests_total", "Model calls, by provider, model and outcome (ok, error).", "provider", "model", "outcome")
	LLMTokens   = counterVec("oxios_llm_tokens_total", "Tokens of model calls, by direction (in, out).", "provider", "model", "direction")
	LLMCost     = counterVec("oxios_llm_cost_usd_total", "Cost of model calls in USD (models with a price).", "provider", "model")
	LLMLatency  = histogramVec("oxios_llm_request_duration_seconds", "Latency of model calls.", []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}, "provider", "model")

	ToolCalls   = counterVec("oxios_tool_calls_total", "Tool calls of llm agents, by tool and outcome (ok, error, denied).", "tool", "outcome")
	ToolLatency = histogramVec("oxios_tool_call_duration_seconds", "Duration of tool calls.", []float64{.001, .01, .05, .1, .5, 1, 5, 30, 120}, "tool")

	EventsPublished = counter("oxios_events_published_total", "Events published to the bus by this node.")
	SSEClients      = gauge("oxios_sse_clients", "Open Server-Sent Events streams (events and log follows).")

	HTTPRequests = counterVec("oxios_http_requests_total", "API requests, by route and status code.", "route", "code")
	HTTPEvicted  = counter("oxios_http_unauthenticated_evicted_total", "Connections without a valid token closed to make room, past the cap on such connections.")
	HTTPLatency  = histogramVec("oxios_http_request_duration_seconds", "API request latency (streams excluded).", []float64{.001, .005, .01, .05, .1, .5, 1, 5}, "route")
)

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

func counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	Registry.MustRegister(c)
	return c
}

func gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	Registry.MustRegister(g)
	return g
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	Registry.MustRegister(c)
	return c
}

func histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	Registry.MustRegister(h)
	return h
}

// GaugeFunc is a state read at scrape time: each call of read yields the
// value of every label set.
type GaugeFunc struct {
	desc *prometheus.Desc
	read func(emit func(value float64, labels ...string))
}

// NewGaugeFunc makes a gauge read at scrape time.
func NewGaugeFunc(name, help string, labels []string, read func(emit func(value float64, labels ...string))) *GaugeFunc {
	return &GaugeFunc{desc: prometheus.NewDesc(name, help, labels, nil), read: read}
}

// Describe implements prometheus.Collector.
func (g *GaugeFunc) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

// Collect implements prometheus.Collector.
func (g *GaugeFunc) Collect(ch chan<- prometheus.Metric) {
	g.read(func(v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, labels...)
	})
}
