"""Prometheus metrics: what an operator graphs and alerts on (exposed at GET /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WEBHOOKS = Counter(
    "castbridge_webhooks_total",
    "Webhooks received, by endpoint and outcome",
    ["endpoint", "outcome"],
)
GATEWAY_SENDS = Counter(
    "castbridge_gateway_sends_total",
    "Gateway send attempts, by gateway and outcome",
    ["gateway", "outcome"],
)
GHL_REPORTS = Counter(
    "castbridge_ghl_reports_total", "HighLevel status reports, by outcome", ["outcome"]
)
MESSAGES_FINAL = Counter(
    "castbridge_messages_final_total", "Messages reaching a final state, by state", ["state"]
)
RECONCILED = Counter(
    "castbridge_reconciliations_total",
    "Ambiguous sends looked up at the gateway, by gateway and result",
    ["gateway", "result"],
)
INBOUND = Counter(
    "castbridge_inbound_total",
    "Replies and opt-out signals from handsets, by outcome (delivered to HighLevel, "
    "unroutable, dead, duplicate, optout, optin)",
    ["outcome"],
)
OPTOUT_CHANGES = Counter(
    "castbridge_optout_changes_total", "Opt-outs and opt-ins recorded, by source", ["source", "to"]
)
ACCOUNT_PAUSES = Counter(
    "castbridge_account_pauses_total", "Gateway accounts paused, by the gateway's code", ["code"]
)
ACCOUNT_RESUMES = Counter(
    "castbridge_account_resumes_total", "Gateway accounts resumed, by how", ["by"]
)
ACCOUNTS_PAUSED = Gauge("castbridge_accounts_paused", "Gateway accounts paused right now")
DB_STATEMENTS = Counter(
    "castbridge_db_statements_total",
    "SQL statements sent to the database, by verb (what each message costs the database)",
    ["verb"],
)
DB_COMMITS = Counter("castbridge_db_commits_total", "Database transactions committed")
JOB_SECONDS = Histogram(
    "castbridge_job_seconds",
    "Time to run one job, by kind",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
JOBS_IN_FLIGHT = Gauge("castbridge_jobs_in_flight", "Jobs being worked on by this process")
QUEUE_DEPTH = Gauge("castbridge_queue_depth", "Queued jobs per lane", ["lane"])
OLDEST_DUE_SECONDS = Gauge(
    "castbridge_oldest_due_job_seconds", "Age of the oldest due job per lane", ["lane"]
)
DELIVERY_LATENCY = Histogram(
    "castbridge_webhook_to_delivered_seconds",
    "From the Delivery-URL post to the gateway's delivery report",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
)
ACCOUNT_SENDS = Counter(
    "castbridge_account_sends_total",
    "Send requests per gateway account, by outcome (accepted, rate_limited: the gateway "
    "answered 429, error: any other refusal); the rate of `accepted` is the account's send rate",
    ["gateway", "account_id", "outcome"],
)
GHL_CALLS = Counter(
    "castbridge_ghl_calls_total",
    "HighLevel API calls, by operation and HTTP status (`network` when no answer came)",
    ["operation", "status"],
)
TOKEN_REFRESHES = Counter(
    "castbridge_token_refreshes_total",
    "HighLevel token refreshes and re-mints, by grant type and outcome",
    ["user_type", "outcome"],
)
WEBHOOK_TO_FINAL = Histogram(
    "castbridge_webhook_to_final_seconds",
    "From the Delivery-URL post to HighLevel accepting the message's final status, by status",
    ["status"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 21600),
)
# One series per installed location: what "this location usually sends and has gone quiet"
# alerts on (docs/alerts.md). Locations are bounded by installs, not by traffic.
DELIVERY_BY_LOCATION = Counter(
    "castbridge_delivery_webhooks_by_location_total",
    "Delivery-URL posts accepted, by HighLevel location",
    ["location_id"],
)
