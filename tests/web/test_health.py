"""Health, readiness, metrics and the OpenAPI document over real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
from fastapi.routing import APIRoute

from castbridge.sandbox.stack import run_stack
from castbridge.web import gateway_webhooks, ghl_webhooks, health, oauth
from castbridge.web import settings as settings_page
from tests.web.support import body_of, payload, post_signed

NOT_CONFIGURED: dict[str, Any] = {
    "ghl_client_id": None,
    "ghl_client_secret": None,
    "ghl_conversation_provider_id": None,
}


async def test_healthz_is_200(tmp_path: Path) -> None:
    """/healthz answers 200 ok."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        response = await http.get(f"{stack.url}/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


async def test_readyz_is_200_when_configured(tmp_path: Path) -> None:
    """/readyz is 200 with no problems when the database is migrated and HighLevel configured."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        response = await http.get(f"{stack.url}/readyz")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ready"
        assert body["problems"] == []
        assert body["database"] == "ok"
        assert body["schema"]["current"] == body["schema"]["head"]
        assert body["worker"]["running"] is True


async def test_readyz_is_503_naming_missing_highlevel_settings(tmp_path: Path) -> None:
    """/readyz is 503 with a `problems` list naming each missing GHL_* setting."""
    async with (
        run_stack(tmp_path, **NOT_CONFIGURED) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        response = await http.get(f"{stack.url}/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not ready"
        assert isinstance(body["problems"], list)
        assert body["problems"]
        text = " ".join(body["problems"])
        for name in NOT_CONFIGURED:
            assert name.upper() in text
        assert "CASTBRIDGE_PUBLIC_URL" not in text


async def test_readyz_is_503_without_public_url(tmp_path: Path) -> None:
    """/readyz names CASTBRIDGE_PUBLIC_URL when HighLevel could not call castbridge back."""
    async with (
        run_stack(tmp_path, public_url=None) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        response = await http.get(f"{stack.url}/readyz")
        assert response.status_code == 503
        assert any("CASTBRIDGE_PUBLIC_URL" in problem for problem in response.json()["problems"])


async def test_metrics_expose_castbridge_counters(tmp_path: Path) -> None:
    """/metrics is Prometheus text with castbridge_ series, counting the webhooks received."""
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        await post_signed(http, stack, stack.delivery_url, body_of(payload(stack)))
        await http.post(stack.delivery_url, content=b"{}")  # unsigned: counted as rejected
        response = await http.get(f"{stack.url}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        for name in (
            "castbridge_webhooks_total",
            "castbridge_gateway_sends_total",
            "castbridge_ghl_reports_total",
            "castbridge_messages_final_total",
            "castbridge_job_seconds",
        ):
            assert f"# TYPE {name}" in text
        assert 'castbridge_webhooks_total{endpoint="delivery",outcome="queued"}' in text
        assert 'castbridge_webhooks_total{endpoint="delivery",outcome="bad_signature"}' in text


async def test_openapi_lists_every_route_and_both_webhook_bodies(tmp_path: Path) -> None:
    """/openapi.json lists every route, with the Delivery and app-event body schemas."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        response = await http.get(f"{stack.url}/openapi.json")
        assert response.status_code == 200
        document = response.json()
        routes = {
            (route.path, method.lower())
            for router in (
                health.router,
                oauth.router,
                ghl_webhooks.router,
                gateway_webhooks.router,
                settings_page.router,
            )
            for route in router.routes
            if isinstance(route, APIRoute) and route.include_in_schema
            for method in route.methods or ()
        }
        assert len(routes) == 15
        listed = {
            (path, method)
            for path, operations in document["paths"].items()
            for method in operations
        }
        assert routes == listed
        assert {path for path, _ in listed} >= {
            "/healthz",
            "/readyz",
            "/metrics",
            "/oauth/install",
            "/oauth/callback",
            "/webhooks/ghl/delivery",
            "/webhooks/ghl/events",
            "/webhooks/gateways/{gateway}/{account_token}",
        }
        delivery = document["paths"]["/webhooks/ghl/delivery"]["post"]
        schema = delivery["requestBody"]["content"]["application/json"]["schema"]
        assert delivery["requestBody"]["required"] is True
        assert {"messageId", "locationId"} == set(schema["required"])
        assert "phone" in schema["properties"]
        assert {"message", "attachments", "timestamp", "webhookId"} <= set(schema["properties"])
        events = document["paths"]["/webhooks/ghl/events"]["post"]
        event_schema = events["requestBody"]["content"]["application/json"]["schema"]
        assert event_schema["required"] == ["type"]
        assert {"appId", "locationId", "companyId", "webhookId"} <= set(event_schema["properties"])
        for operation in (delivery, events):
            assert {"200", "400", "401", "413", "429"} <= set(operation["responses"])
        assert "$defs" not in str(document["paths"]), "a nested $ref would not resolve here"


async def test_admin_token_guards_metrics_docs_and_readiness_detail(tmp_path: Path) -> None:
    """With CASTBRIDGE_ADMIN_TOKEN set, /metrics and /docs need the bearer, and /readyz says
    only ready or not; with the token everything is there."""
    async with (
        run_stack(tmp_path, admin_token="admin-token-for-tests") as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        for path in ("/metrics", "/docs", "/openapi.json"):
            assert (await http.get(f"{stack.url}{path}")).status_code == 401, path
        ready = await http.get(f"{stack.url}/readyz")
        assert set(ready.json()) == {"status"}
        auth = {"Authorization": "Bearer admin-token-for-tests"}
        assert (await http.get(f"{stack.url}/metrics", headers=auth)).status_code == 200
        assert "problems" in (await http.get(f"{stack.url}/readyz", headers=auth)).json()
        assert (await http.get(f"{stack.url}/healthz")).status_code == 200  # always open


async def test_routes_deny_framing(tmp_path: Path) -> None:
    """Nothing but the settings page may be framed: DENY and frame-ancestors 'none'."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        for path in ("/healthz", "/oauth/install", "/readyz"):
            response = await http.get(f"{stack.url}{path}")
            assert response.headers["x-frame-options"] == "DENY", path
            assert response.headers["content-security-policy"] == "frame-ancestors 'none'"


async def test_oauth_pages_are_rate_limited_per_client(tmp_path: Path) -> None:
    """/oauth/install beyond CASTBRIDGE_OAUTH_RATE_LIMIT_PER_MINUTE from one address is 429
    with Retry-After, before anything is stored."""
    async with (
        run_stack(tmp_path, oauth_rate_limit_per_minute=6) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        codes = [(await http.get(f"{stack.url}/oauth/install")).status_code for _ in range(4)]
        assert codes[:2] == [302, 302]
        assert 429 in codes
        limited = await http.get(f"{stack.url}/oauth/install")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
