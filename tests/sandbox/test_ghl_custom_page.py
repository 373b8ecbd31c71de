"""The HighLevel sandbox's Custom Page host: the frame, the handshake answer, the payloads."""

from __future__ import annotations

import json

import httpx2

from castbridge.sandbox.ghl import GHLSandboxConfig, create_ghl_sandbox
from castbridge.sandbox.server import serve_app
from tests.support.sso import openssl_decrypt

CONFIG = GHLSandboxConfig(location_ids=["sbxLocationHost00001"], sso_key="host-secret")


async def test_payloads_are_what_openssl_decrypts_for_each_user_and_context() -> None:
    app = create_ghl_sandbox(CONFIG)
    async with serve_app(app) as url, httpx2.AsyncClient(base_url=url) as http:
        for role in ("admin", "user"):
            answer = await http.get(
                "/_sandbox/custom-page/payload", params={"role": role, "context": "location"}
            )
            context = json.loads(openssl_decrypt(answer.json()["payload"], "host-secret"))
            assert context["role"] == role
            assert context["activeLocation"] == "sbxLocationHost00001"
            assert context["companyId"] == CONFIG.company_id
        agency = await http.get("/_sandbox/custom-page/payload", params={"context": "agency"})
        context = json.loads(openssl_decrypt(agency.json()["payload"], "host-secret"))
        assert "activeLocation" not in context
        assert (
            await http.get("/_sandbox/custom-page/payload", params={"role": "x"})
        ).status_code == 422


async def test_the_host_frames_the_custom_page_and_answers_only_when_not_silent() -> None:
    app = create_ghl_sandbox(CONFIG)
    async with serve_app(app) as url, httpx2.AsyncClient(base_url=url) as http:
        assert (await http.get("/custom-page/view")).status_code == 409
        app.state.sandbox.custom_page_url = "http://127.0.0.1:9/app/settings"
        index = await http.get("/custom-page")
        assert index.text.count("/custom-page/view?") == 4
        page = await http.get("/custom-page/view", params={"role": "user"})
        assert (
            '<iframe id="custom-page" title="castbridge" src="http://127.0.0.1:9/app/settings">'
            in page.text
        )
        assert "REQUEST_USER_DATA_RESPONSE" in page.text
        assert 'var payload="U2FsdGVkX1' in page.text
        silent = await http.get("/custom-page/view", params={"silent": "true"})
        assert "var payload=null" in silent.text
