"""Prometheus metrics: what an operator graphs and alerts on (exposed at GET /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WEBHOOKS = Counter(
    "castbridge_webhooks_total",
    "HighLevel webhooks received, by endpoint and outcome",
    ["endpoint", "outcome"],
)
GATEWAY_SENDS = Counter(
    "castbridge_gateway_sends_total", "Gateway send attempts, by outcome", ["outcome"]
)
GHL_REPORTS = Counter(
    "castbridge_ghl_reports_total", "HighLevel status reports, by outcome", ["outcome"]
)
MESSAGES_FINAL = Counter(
    "castbridge_messages_final_total", "Messages reaching a final state, by state", ["state"]
)
JOB_SECONDS = Histogram(
    "castbridge_job_seconds",
    "Time to run one job, by kind",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
JOBS_IN_FLIGHT = Gauge("castbridge_jobs_in_flight", "Jobs being worked on by this process")
