"""Pipeline: webhook -> Cast send -> status polls -> HighLevel's final status, end to end."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import (
    LIFTED,
    cast_config,
    cast_pacing,
    castbridge,
    castbridge_settings,
    ghl_config,
    install,
    location_ids,
    percentile,
    sandboxes,
    self_cpu_seconds,
    workdir,
)
from bench.load import Generator, prepare


async def pipeline_run(
    locations: int,
    messages: int,
    *,
    concurrency: int = 64,
    cast_account_rate: float = LIFTED,
    cast_ip_limited: bool = False,
    ghl_window_requests: int = int(LIFTED),
    within: float = 600.0,
    rate: float | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Fire `messages` webhooks over `locations` and wait until HighLevel has every final status.

    The Cast account sends `cast_account_rate` messages/s; `cast_ip_limited` keeps Cast's
    documented 30 requests/s per IP (burst 50) instead of lifting it; HighLevel allows
    `ghl_window_requests` per 10 s per location. castbridge paces to match (its defaults when
    a limit is real, raised when it is lifted) unless `overrides` say otherwise. With `rate`,
    webhooks arrive at that steady rate instead of all at once.
    """
    locs = location_ids(locations)
    settings_overrides: dict[str, Any] = {
        # 25/s per IP: castbridge's default under Cast's documented 30.
        **cast_pacing(cast_account_rate, 25.0 if cast_ip_limited else LIFTED),
        "ghl_rate_limit": 10.0,  # the most castbridge allows: 100 per 10 s
        **overrides,
    }
    with workdir("pipeline") as wd:
        ghl = ghl_config(locs, rate_limit_requests=ghl_window_requests)
        cast = cast_config(rate_limit=cast_account_rate)
        if cast_ip_limited:
            cast.ip_rate, cast.ip_burst = 30.0, 50.0  # Cast's documented per-IP limit
        async with sandboxes(wd, ghl, cast) as sbx:
            settings = castbridge_settings(sbx, wd / "cb", **settings_overrides)
            async with castbridge(settings) as cb:
                install_seconds = await install(cb, locs)
                hooks = prepare(sbx.ghl, messages, locs)
                await sbx.register([hook.payload for hook in hooks])
                async with Generator(concurrency) as gen:
                    await gen.warm(cb.url)
                    cb.proc.mark()
                    sbx.proc.mark()
                    cpu0 = self_cpu_seconds()
                    await sbx.emit()
                    fire = asyncio.create_task(gen.fire(cb.delivery_url, hooks, rate=rate))
                    started = time.monotonic()
                    while time.monotonic() - started < within:
                        if fire.done() and await sbx.final_count() >= messages:
                            break
                        await asyncio.sleep(0.1)
                    fired = await fire
                    window = time.monotonic() - started
                    castbridge_cpu = cb.proc.cpu_since_mark()
                    sandbox_cpu = sbx.proc.cpu_since_mark()
                    generator_cpu = self_cpu_seconds() - cpu0
                peak_rss = cb.proc.peak_rss_mib()
                finals = await sbx.finals()
                stats = await sbx.stats(send_times=True)
    latencies = [
        (finals[mid][1] - posted) * 1000 for mid, posted in fired.posted_at.items() if mid in finals
    ]
    first_post = min(fired.posted_at.values())
    last_final = max((t for _, t in finals.values()), default=first_post)
    seconds = last_final - first_post
    by_status: dict[str, int] = {}
    for status, _ in finals.values():
        by_status[status] = by_status.get(status, 0) + 1
    final_times = sorted(t for _, t in finals.values())
    final_span = final_times[-1] - final_times[0] if len(final_times) > 1 else 0.0
    sends = stats["cast"].pop("send_times")
    send_span = sends[-1] - sends[0] if len(sends) > 1 else 0.0
    return {
        "locations": locations,
        "messages": messages,
        "concurrency": concurrency,
        "offered_rate_per_s": rate,
        "completed": len(finals),
        "final_statuses": by_status,
        "seconds": round(seconds, 2),
        "messages_per_s": round(len(finals) / seconds, 1) if seconds > 0 else 0.0,
        "intake": fired.figures(),
        "send_rate_per_s": round((len(sends) - 1) / send_span, 2) if send_span > 0 else 0.0,
        "sends_seconds": round(send_span, 2),
        # When HighLevel got the first final status, and the pace of final statuses after it.
        "first_final_s": round(final_times[0] - first_post, 2) if final_times else 0.0,
        "final_rate_per_s": round((len(final_times) - 1) / final_span, 2) if final_span else 0.0,
        "latency_p50_ms": round(percentile(latencies, 50), 1),
        "latency_p99_ms": round(percentile(latencies, 99), 1),
        "latency_min_ms": round(min(latencies, default=0.0), 1),
        "latency_max_ms": round(max(latencies, default=0.0), 1),
        "castbridge_cpu_seconds": round(castbridge_cpu, 2),
        "castbridge_cpu_ms_per_message": round(1000 * castbridge_cpu / max(1, len(finals)), 2),
        "castbridge_cpu_share": round(castbridge_cpu / window, 2),
        "castbridge_peak_rss_mib": round(peak_rss, 1),
        "sandboxes_cpu_share": round(sandbox_cpu / window, 2),
        "generator_cpu_share": round(generator_cpu / window, 2),
        "install_seconds_each": round(install_seconds, 3),
        "cast": stats["cast"],
        "ghl": stats["ghl"],
        "rate_limited_429": stats["cast"]["rate_limited_429"] + stats["ghl"]["rate_limited_429"],
    }


STEADY_RATE = 15.0  # messages/s offered in the steady run: below capacity, so nothing queues


async def run(quick: bool) -> dict[str, Any]:
    burst = await pipeline_run(20, 300 if quick else 2000)
    # The same path at a steady rate: latency without a queue in front of it.
    seconds = 6 if quick else 40
    burst["steady"] = await pipeline_run(
        20, int(STEADY_RATE * seconds), rate=STEADY_RATE, concurrency=256
    )
    return burst


def summary(result: dict[str, Any]) -> list[str]:
    return [
        f"{result['completed']}/{result['messages']} messages over {result['locations']} "
        f"locations in {result['seconds']} s: {result['messages_per_s']} msg/s end to end",
        f"webhook -> HighLevel final status: p50 {result['latency_p50_ms']:.0f} ms, "
        f"p99 {result['latency_p99_ms']:.0f} ms (min {result['latency_min_ms']:.0f} ms)",
        f"castbridge: {result['castbridge_cpu_ms_per_message']} ms CPU per message, "
        f"{result['castbridge_cpu_share']} core busy, peak RSS {result['castbridge_peak_rss_mib']} "
        f"MiB; 429s {result['rate_limited_429']}, HighLevel 403s {result['ghl']['refused_403']}",
        *_steady(result.get("steady")),
    ]


def _steady(steady: dict[str, Any] | None) -> list[str]:
    if not steady:
        return []
    return [
        f"steady {steady['offered_rate_per_s']:.0f} msg/s for {steady['messages']} messages: "
        f"webhook -> final status p50 {steady['latency_p50_ms']:.0f} ms, "
        f"p99 {steady['latency_p99_ms']:.0f} ms; webhook ack p99 {steady['intake']['p99_ms']} ms"
    ]
