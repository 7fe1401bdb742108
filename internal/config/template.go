package config

// Template is the config.toml written on first start: every setting, at its
// default, with a comment saying what it does and what is allowed. A test
// checks that it parses to exactly DefaultConfig().
const Template = `# oxios configuration. Every setting is shown at its default.
# Check changes with: oxios config validate
# Durations are Go duration strings: "500ms", "10s", "1m30s".

# Name of this node in events and records. Empty means the host name.
# Allowed: letters, digits, '-' and '_'.
node = ""

# Labels of this node, shown by 'oxios node list': {gpu = "yes", zone = "a"}.
node_labels = {}

[api]
# Address the HTTP API and the dashboard listen on ("host:port").
# Binding anything but loopback exposes the API to the network; every
# /api/ route still requires a token. Overridden by --listen.
listen = "127.0.0.1:4200"

[daemon]
# How long 'oxios stop' waits after SIGTERM before it sends SIGKILL.
stop_timeout = "10s"
# How long 'oxios start' waits for the daemon to answer /readyz with 200.
ready_timeout = "15s"
# Deadline for each part of the daemon to stop during a graceful shutdown.
shutdown_timeout = "5s"

[log]
# Least severe level written to logs/oxios.log: debug, info, warn or error.
level = "info"
# text (key=value lines) or json (one JSON object per line).
format = "text"
# Rotate logs/oxios.log when it reaches this many megabytes (1 to 10240).
max_size_mb = 10
# Rotated files kept besides the current one (0 to 1000).
max_files = 5

[backbone]
# oxios keeps its events and state in NATS JetStream. Empty: run NATS inside
# the daemon, storing in $OXIOS_HOME/data (no port is opened). Set a URL
# ("nats://10.0.0.5:4222", comma-separated for a cluster) to use an external
# NATS server with JetStream enabled instead.
url = ""
# NATS credentials file (.creds) for the external server; empty for none.
credentials = ""
# Copies of each stream and bucket: 1, 3 or 5. 0 chooses: 3 on an embedded
# cluster of 3 or more nodes, else 1. At most the number of nodes.
replicas = 0

[cluster]
# Several daemons' embedded NATS servers form one cluster: set this node's
# route address here and the others' in peers. Every node needs the same
# secrets/cluster.key ('oxios cluster init' on the first node). Empty: one
# node, no route port.
listen = ""
# The other nodes' route addresses: ["10.0.0.2:7101", "10.0.0.3:7101"].
peers = []
# A node whose heartbeat is this old is dead, and its agents are started on
# the other nodes; a node that cannot renew its own for this long stops its
# agents (it fences itself). Shorter fails over sooner; longer rides out
# pauses and short partitions without moving agents.
lease = "5s"
# How often a node beats; "0s" is lease/5. A node is suspect after two
# missed beats. The lease must be at least twice this.
heartbeat = "0s"
# TLS for the routes: this node's certificate and key, and the CA that
# signed every node's. All three or none; the routes are authenticated by
# the cluster key either way.
tls_cert = ""
tls_key = ""
tls_ca = ""

[store]
# When the embedded storage is flushed to disk. "1s": fsync once a second;
# a crash of the daemon loses nothing, a power loss at most the last second.
# "always": fsync every write before it is acknowledged (slower).
sync = "1s"

[events]
# Events older than this are dropped from the event log.
max_age = "168h"
# The oldest events are dropped when the event log passes this many megabytes.
max_mb = 1024

[scheduler]
# Most agents running at once, of every kind; more wait in the queue, and
# say why. 0 derives it from the machine: a quarter of the daemon's
# open-file limit and half the user's process limit (oxios scheduler shows
# the number).
max_running = 0
# Most language-model agents running at once (they also count above).
max_running_llm = 8
# Most agents started in any 60 seconds (new spawns and manual restarts);
# 0 is no limit. Automatic restarts are paced by their backoff instead.
spawns_per_minute = 0

[agents]
# Default grace between an agent's stop signal and SIGKILL (a spec's
# stop_timeout overrides it).
stop_timeout = "10s"
# Rotate logs/agents/<id>.log when it reaches this many megabytes (1 to 10240).
log_max_mb = 10
# Rotated files of each agent's log kept besides the current one (0 to 100).
log_max_files = 3
# Ended agents kept (newest first); older records, logs and default
# workspaces are deleted. 0 deletes an agent's record as soon as retention
# next runs after it ends.
retain = 1000
# Ended agents older than this are deleted, whatever their number.
retain_for = "168h"

[agent]
# Model of llm agents that name none: "provider/model". Providers: openai,
# anthropic, ollama (a local Ollama server; no key).
default_model = "openai/gpt-4.1-mini"
# Most model calls (loop steps) of one run of an llm agent (1 to 10000).
max_steps = 50
# Longest run of an llm agent; a spec's timeout overrides it.
timeout = "10m"

# Model providers. Keys are secrets: prefer the environment variables
# (OPENAI_API_KEY, ANTHROPIC_API_KEY) of the daemon; a key set here is
# never logged. Empty base_url: the provider's own (or $OPENAI_BASE_URL).
[providers.openai]
base_url = ""
api_key = ""

[providers.anthropic]
base_url = ""
api_key = ""

[providers.ollama]
base_url = "http://127.0.0.1:11434/v1"
api_key = ""

# Prices in USD per million tokens, by model; they add to or override the
# built-in table. A model without a price has no cost (null), not zero.
# [prices."openai/my-finetune"]
# input = 0.40
# output = 1.60

# What llm agents' tools may touch by default. A spec's "policy" replaces
# any list it gives. Relative paths are relative to the agent's workspace.
[policy]
# Tools whose every call waits for a human's approval (oxios approvals
# approve|reject), e.g. ["exec", "http_fetch"]; the agent is
# waiting_approval meanwhile.
ask = []
# A pending approval is rejected after this long; "0s" waits for ever.
ask_timeout = "0s"

[policy.paths]
# Globs (doublestar) of the paths file tools may touch; empty: the agent's
# workspace only. Paths are resolved (.., symlinks) before matching.
allow = []
# Globs that are never allowed, even inside the workspace.
deny = []

[policy.exec]
# Programs the exec tool may run: names found on PATH, or absolute paths.
# Empty: exec runs nothing.
allow = []
# Let exec run command lines through /bin/sh -c (needs "sh" in allow).
shell = false
# Environment variables a program may receive besides PATH, HOME, LANG.
env = []
# A program running longer is killed with its whole process group.
timeout = "1m0s"
# Output returned to the model is cut at this many KiB.
max_output_kb = 64

[policy.network]
# Hosts http_fetch may reach: "example.com", "*.example.com", "host:port".
# Empty: no network.
allow = []

# How every process agent and every program of the exec tool is confined
# by the kernel (Landlock, a network namespace, rlimits, no capabilities);
# see "Sandbox" in the README. A spec's "sandbox" narrows it; widening it
# (mode, write, network, higher limits, paths into the oxios home) needs
# the admin role.
[sandbox]
# enforce: an agent whose sandbox cannot be applied does not start;
# best_effort: apply what the kernel offers and record the rest; off.
mode = "enforce"
# Network of process agents, and of exec-tool programs: none, loopback
# (a private loopback only) or any.
network = "any"
exec_network = "none"
# Absolute paths every agent's programs may also read (and execute), or
# also write. The system directories (/usr, /bin, /lib*, /etc, /opt) are
# always readable; an agent always writes its own directory.
read = []
write = []

[sandbox.limits]
# 0 is no limit. memory_mb caps the data segment (RLIMIT_DATA);
# processes counts tasks (RLIMIT_NPROC, and oxios stops an agent whose
# process group reaches it).
memory_mb = 4096
cpu_seconds = 0
open_files = 4096
processes = 4096
file_size_mb = 0

# Cron jobs: each firing spawns the agent spec given (the keys of
# POST /api/v1/agents). Schedules are 5-field cron expressions, @hourly,
# @daily, ... or "@every 30s"; zone is an IANA name (default: local time).
# overlap: skip | queue | allow, while the previous run is active.
# missed: skip | run-once, for firings that fell while the daemon was down.
# Jobs here are read-only through the API (oxios cron list shows them).
# [cron.jobs.nightly-report]
# schedule = "0 3 * * *"
# zone = "Europe/Berlin"
# overlap = "skip"
# missed = "run-once"
# spec = { command = "/usr/local/bin/report", args = ["--daily"] }
`
