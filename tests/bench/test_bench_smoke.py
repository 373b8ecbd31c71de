"""The benchmark code runs: a tiny intake benchmark against real processes on loopback."""

from __future__ import annotations

from bench.intake import run_intake

FIGURES = {
    "requests",
    "acknowledged",
    "non_200",
    "transport_errors",
    "seconds",
    "ack_per_s",
    "p50_ms",
    "p99_ms",
    "generator_cpu_share",
    "server_cpu_seconds",
    "server_cpu_ms_per_request",
    "server_peak_rss_mib",
}


async def test_intake_benchmark_at_tiny_size() -> None:
    result = await run_intake(requests=50, concurrency=8, locations=1, worker_busy=False)

    assert {"requests", "concurrency", "locations", "bare", "castbridge"} <= result.keys()
    assert result["castbridge_over_bare"] > 0
    for server in ("bare", "castbridge"):
        assert result[server].keys() >= FIGURES
        assert result[server]["acknowledged"] == 50
        assert result[server]["ack_per_s"] > 0
