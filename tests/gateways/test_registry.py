"""Every registered gateway, built the way the core builds it, against its own sandbox: what
the operator's `<NAME>_*` defaults promise holds for each of them."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
import pytest

from castbridge.gateways.base import GatewayError, SendRequest
from castbridge.gateways.registry import SPECS
from castbridge.gateways.spec import AccountConfig, GatewayContext
from castbridge.limits import LocalPacer
from castbridge.sandbox.stack import run_stack

NUMBERS = {
    "cast": "+639171234567",
    "castbrick": "+244923001234",
    "cellcast": "+61412345678",
    "ugsms": "+256702912345",
}
TIMEOUT = 0.5
HELD_FOR = 6.0


def test_every_gateway_has_a_test_number() -> None:
    assert set(NUMBERS) == set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
async def test_timeout_seconds_bounds_a_send_that_is_never_answered(
    name: str, tmp_path: Path
) -> None:
    """`<NAME>_TIMEOUT_SECONDS` is the longest a send waits for an answer (Cast and Cellcast
    used to wait for the shared client's 30 s instead); the send that timed out is reported as
    an unknown outcome, never as "not sent" (the sandbox did take it)."""
    async with run_stack(tmp_path, with_castbridge=False) as s:
        spec = SPECS[name]
        defaults = spec.defaults(
            _env_file=None,
            api_url=s.gateway_urls[name],
            api_key=s.gateway_keys[name],
            timeout_seconds=TIMEOUT,
        )
        sandbox = getattr(s, name)
        sandbox.faults.timeout_next = 1
        sandbox.faults.timeout_seconds = HELD_FOR
        account = AccountConfig(
            account_id=1,
            gateway=name,
            api_key=s.gateway_keys[name],
            api_url=s.gateway_urls[name],
            sender_id=None,
            channel=spec.default_channel,
            settings=spec.account_settings(),
        )
        async with httpx2.AsyncClient(timeout=30.0) as http:
            gateway = spec.build(
                account,
                GatewayContext(
                    http=http,
                    pacer=LocalPacer(),
                    account_bucket="acct:test",
                    ip_bucket="ip:test",
                    defaults=defaults,
                ),
            )
            started = time.monotonic()
            with pytest.raises(GatewayError) as raised:
                await gateway.send(
                    SendRequest(to_e164=NUMBERS[name], text="hello", reference="loc:msg-1")
                )
            waited = time.monotonic() - started
        assert raised.value.outcome_unknown
        assert waited < HELD_FOR / 2, f"{name} waited {waited:.1f} s, not {TIMEOUT} s"
