"""Limits held: one location on a 10 msg/s Cast account and HighLevel's 100 requests per 10 s."""

from __future__ import annotations

from typing import Any

from bench.pipeline import pipeline_run

CAST_LIMIT = 10.0  # messages/s on the Cast account, and CAST_RATE_LIMIT
GHL_WINDOW = 100  # HighLevel: requests per 10 s per location (castbridge's default 8/s stays)


async def run_limits(messages: int) -> dict[str, Any]:
    result = await pipeline_run(
        1,
        messages,
        cast_account_rate=CAST_LIMIT,
        cast_ip_limited=True,
        ghl_window_requests=GHL_WINDOW,
        ghl_rate_limit=8.0,  # castbridge's default GHL_RATE_LIMIT
        within=60 + messages / 2,
    )
    result["cast_limit_per_s"] = CAST_LIMIT
    result["send_rate_share_of_limit"] = round(result["send_rate_per_s"] / CAST_LIMIT, 3)
    result["ghl_limit"] = f"{GHL_WINDOW} requests / 10 s"
    return result


async def run(quick: bool) -> dict[str, Any]:
    return await run_limits(50 if quick else 500)


def summary(result: dict[str, Any]) -> list[str]:
    return [
        f"{result['messages']} messages, 1 location: Cast sends at {result['send_rate_per_s']}/s "
        f"= {result['send_rate_share_of_limit']:.1%} of the {result['cast_limit_per_s']:.0f}/s "
        "limit",
        f"429s received: Cast {result['cast']['rate_limited_429']}, HighLevel "
        f"{result['ghl']['rate_limited_429']}; drained (last final status at HighLevel) in "
        f"{result['seconds']} s",
    ]
