"""The performance report renders a fairness run that was stopped before its backlog drained."""

from __future__ import annotations

from typing import Any

from bench import report


def _figures(backlog: int, *, drained: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "backlog": backlog,
        "drained": drained,
        "account_rate_per_s": 5.0,
        "b_account": "shared with A",
        "a_acknowledged": backlog,
        "a_burst_seconds": 1.0,
        "b_alone_final_s": 0.5,
        "b_behind_backlog_final_s": 0.9,
        "b_extra_s": 0.4,
        "a_sent_before_b": 10,
        "a_first_final_s": 0.6,
        "a_send_rate_per_s": 5.0,
        "a_final_statuses": 10,
        "rate_limited_429": 0,
        "billed_twice": 0,
    }
    if drained:
        figures.update(a_last_send_s=30.0, a_last_final_s=30.5)
    else:
        figures["a_sent_when_stopped"] = 114
    return figures


def test_a_backlog_not_drained_is_shown_as_such() -> None:
    lines = report._fairness(
        {
            "shared": _figures(150, drained=True),
            "shared_large": _figures(10_000, drained=False),
        }
    )
    text = "\n".join(lines)
    assert "30.0 s" in text
    assert "not drained (114 sent by then)" in text
