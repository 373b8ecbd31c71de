"""What an on-call engineer sees: a request id on every request, the metrics the alert rules
use, and job log lines that carry what the job is about."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx2
import structlog

from castbridge.sandbox.stack import run_stack, wait_for
from tests.e2e.support import FAST, LOCATIONS, PH_MOBILE, cast_config, ghl_config, terminal


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, 0 when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_request_ids_metrics_and_job_log_context(tmp_path: Path) -> None:
    """A well-formed X-Request-Id is echoed and a hostile one replaced; one delivered message
    moves the per-account send counter, the HighLevel call counter and the webhook-to-final
    histogram; the worker's log lines for it carry job, location, message, gateway and account."""
    async with run_stack(tmp_path, cast_config=cast_config(), ghl_config=ghl_config(), **FAST) as s:
        async with httpx2.AsyncClient(timeout=5.0) as http:
            echoed = await http.get(f"{s.url}/healthz", headers={"X-Request-Id": "lb-42.a"})
            hostile = await http.get(f"{s.url}/healthz", headers={"X-Request-Id": "<script>" * 20})
            assert echoed.headers["x-request-id"] == "lb-42.a"
            assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])
            before = (await http.get(f"{s.url}/metrics")).text

            await s.install(LOCATIONS[0])
            # The e2e fixture keeps castbridge at WARNING; this test reads its INFO lines (the
            # fixture puts the configuration back afterwards).
            structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
            with structlog.testing.capture_logs(
                processors=[structlog.contextvars.merge_contextvars]
            ) as lines:
                sent = await s.ghl.send_delivery_webhook(
                    s.delivery_url,
                    phone=PH_MOBILE.format(7),
                    message="hi",
                    location_id=LOCATIONS[0],
                )
                assert sent.status_code == 200
                assert await wait_for(lambda: terminal(s.ghl, sent.message_id), within=30)
            after = (await http.get(f"{s.url}/metrics")).text

        def moved(name: str, **labels: str) -> float:
            return _sample(after, name, **labels) - _sample(before, name, **labels)

        assert moved("castbridge_account_sends_total", gateway="cast", outcome="accepted") == 1
        assert moved("castbridge_ghl_calls_total", status="200") >= 1
        assert moved("castbridge_webhook_to_final_seconds_count", status="delivered") == 1
        assert (
            moved("castbridge_delivery_webhooks_by_location_total", location_id=LOCATIONS[0]) == 1
        )
        assert "castbridge_queue_depth{" in after
        assert "castbridge_oldest_due_job_seconds{" in after
        accepted = [line for line in lines if line.get("event") == "gateway_accepted"]
        assert accepted, [line.get("event") for line in lines]
        context = accepted[0]
        assert context["message_id"] == sent.message_id
        assert context["location_id"] == LOCATIONS[0]
        assert context["gateway"] == "cast"
        assert isinstance(context["job_id"], int)
        assert context["account_id"] is not None
