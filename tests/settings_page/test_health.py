"""Delivery health and the diagnosis, from stored outcomes (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from castbridge.settings_page.health import chart_svg, summarise
from castbridge.settings_page.views import LocationPage, diagnose
from castbridge.store.health import Outcome

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _outcome(status: str, hours_ago: float, took: float | None = None, who: str = "a") -> Outcome:
    created = NOW - timedelta(hours=hours_ago)
    finished = created + timedelta(seconds=took) if took is not None else None
    return Outcome(status, created, finished, who)


def test_summary_counts_days_rates_and_the_median() -> None:
    outcomes = [
        _outcome("delivered", 1, took=4, who="a"),
        _outcome("delivered", 2, took=10, who="b"),
        _outcome("delivered", 30, took=6, who="a"),
        _outcome("failed", 3, who="c"),
        _outcome("dead", 50),
        _outcome("accepted", 0.5),
        _outcome("cancelled", 0.2),
        _outcome("delivered", 24 * 8, took=1),  # older than the chart: not counted
    ]
    health = summarise(outcomes, NOW)
    assert len(health.days) == 7
    assert health.days[-1].day == NOW.date()
    assert (health.delivered, health.failed, health.pending) == (3, 2, 1)
    assert health.delivery_rate == 3 / 5
    assert health.median_seconds == 6
    assert health.last_24h == 5  # the cancelled one arrived too
    assert health.recipients == 3
    today = health.days[-1]
    assert (today.delivered, today.failed, today.pending) == (2, 1, 1)
    svg = chart_svg(health.days)
    assert svg.startswith("<svg")
    assert svg.count("<rect") == 5
    assert "2026-03-10: 2 delivered, 1 failed, 1 pending" in svg


def _page(**overrides: object) -> LocationPage:
    values: dict[str, object] = {
        "location_id": "loc",
        "read_only": False,
        "install_state": "active",
        "install_reason": None,
        "account": {"state": "active", "reason": "", "own": True},
        "gateways": [],
        "sender_ids": [],
        "webhook": None,
        "two_way": "",
        "balance": "5 credits",
        "key_problem": None,
        "health": summarise([], NOW),
        "chart": "",
        "recent": [],
        "optouts": 0,
    }
    values.update(overrides)
    return LocationPage(**values)  # type: ignore[arg-type]


def test_the_diagnosis_checks_in_order_and_explains_each_problem() -> None:
    healthy = diagnose(_page(), credits_empty=False, earlier=0)
    assert [d.check for d in healthy] == [
        "Installation",
        "Gateway key",
        "Credits",
        "Account",
        "HighLevel traffic",
        "Error rate",
        "Opt-outs",
    ]
    assert all(d.ok for d in healthy)
    failing = summarise([_outcome("failed", 30, who=str(i)) for i in range(3)], NOW)
    sick = diagnose(
        _page(
            install_state="needs_reinstall",
            key_problem="key:invalid API key",
            account={"state": "paused", "reason": "invalid API key"},
            health=failing,
            optouts=1,
        ),
        credits_empty=True,
        earlier=3,
    )
    assert not any(d.ok for d in sick)
    text = " ".join(d.sentence for d in sick)
    for fix in (
        "reinstall the castbridge app",
        "paste a valid key",
        "top it up",
        "press Resume",
        "castbridge is still the SMS provider",
        "100% of finished messages failed",
        "opted-out numbers for 3 recipients",
    ):
        assert fix in text
    assert diagnose(_page(account=None), credits_empty=None, earlier=0)[1].sentence.startswith(
        "No SMS gateway is set up"
    )
