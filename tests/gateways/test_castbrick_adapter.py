"""CastBrickGateway: the provider-neutral Gateway over CastBrick, against the sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from castbridge.gateways.base import (
    CredentialsError,
    Gateway,
    NotFoundError,
    SendRequest,
    UnsupportedError,
    ValidationFailedError,
)
from castbridge.gateways.castbrick import (
    CASTBRICK_CAPABILITIES,
    SPEC,
    CastBrickAccountSettings,
    CastBrickDefaults,
    CastBrickGateway,
)
from castbridge.gateways.spec import AccountConfig, GatewayContext
from castbridge.limits import LocalPacer
from castbridge.sandbox.castbrick import (
    CASTBRICK_DEFAULT_SENDER,
    DEFAULT_API_KEY,
    DEFAULT_SENDER_ID,
    UNDELIVERABLE_NUMBER,
)
from castbridge.sms.phone import InvalidNumber
from tests.gateways.castbrick_support import (
    AO,
    SMS_ONLY_KEY,
    UNKNOWN_KEY,
    SharedServer,
    make_config,
    shared_server,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[SharedServer]:
    async with shared_server() as shared:
        yield shared


def _request(text: str = "Hello", to: str = AO, **kwargs: Any) -> SendRequest:
    return SendRequest(to_e164=to, text=text, reference="loc-1:msg-1", **kwargs)


async def test_capabilities(server: SharedServer) -> None:
    """AO, E.164, no idempotency, polled and pushed status, pushed replies only, registered
    webhooks, two-way only from a number."""
    gateway = server.sandbox().gateway()
    assert isinstance(gateway, Gateway)
    caps = gateway.capabilities
    assert caps is CASTBRICK_CAPABILITIES
    assert (caps.name, caps.label, caps.country, caps.number_style) == (
        "castbrick",
        "CastBrick",
        "AO",
        "e164",
    )
    assert (caps.idempotency_keys, caps.status_poll, caps.delivery_reports) == (False, True, True)
    assert (caps.dlr_push, caps.inbound_push, caps.inbound_poll, caps.reconcile) == (
        True,
        True,
        False,
        True,
    )
    assert (caps.channels, caps.two_way, caps.webhook_setup, caps.sender_ids_api) == (
        ("sms",),
        "numeric_sender_only",
        "registered",
        False,
    )


async def test_numbers_stay_e164_and_foreign_ones_are_refused(server: SharedServer) -> None:
    """Angolan numbers go as E.164; others raise unless the account allows international."""
    env = server.sandbox()
    assert env.gateway().format_number(AO) == AO
    with pytest.raises(InvalidNumber):
        env.gateway().format_number("+61412345678")
    assert env.gateway(allow_international=True).format_number("+61412345678") == "+61412345678"


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (_request(to="+61412345678"), "INVALID_NUMBER"),
        (_request(text="  "), "EMPTY_MESSAGE"),
        (_request(text="x" * 161), "MESSAGE_TOO_LONG"),
        (_request(text="é" * 150 + "\N{GRINNING FACE}" * 36), "MESSAGE_TOO_LONG"),
        (_request(channel="whatsapp"), "UNSUPPORTED_CHANNEL"),
    ],
    ids=["foreign", "empty", "161-gsm", "71-ucs2-units", "channel"],
)
async def test_refusals_happen_before_any_request(
    server: SharedServer, request_: SendRequest, code: str
) -> None:
    """Foreign numbers, empty text, text over one segment and other channels never reach
    CastBrick; the sentence is one a HighLevel user can act on."""
    env = server.sandbox()
    with pytest.raises(ValidationFailedError) as caught:
        await env.gateway(base_path="").send(request_)
    assert caught.value.code == code
    assert caught.value.message.endswith(".")
    assert env.sandbox.stats.requests == 0


async def test_limits_at_the_edge(server: SharedServer) -> None:
    """160 GSM-7 characters and 70 UCS-2 units fit one segment; max_parts=2 lets 161 through."""
    env = server.sandbox()
    gateway = env.gateway()
    gateway.validate(AO, "x" * 160, "sms")
    gateway.validate(AO, "\N{GRINNING FACE}" * 35, "sms")
    with pytest.raises(ValidationFailedError, match="160 characters, or 70"):
        gateway.validate(AO, "\N{GRINNING FACE}" * 36, "sms")
    env.gateway(max_parts=2).validate(AO, "x" * 161, "sms")


async def test_send_uses_the_account_sender_and_fallback_off(server: SharedServer) -> None:
    """The account's sender ID is sent and `fallback: false` is explicit: an unregistered
    sender is a visible refusal, not a silent swap."""
    env = server.sandbox()
    result = await env.gateway(base_path="").send(_request())
    stored = env.sandbox.messages[result.gateway_message_id or ""]
    assert stored.sender_id == DEFAULT_SENDER_ID
    with pytest.raises(ValidationFailedError, match="not registered"):
        await env.gateway(base_path="").send(_request(sender_id="UNKNOWN"))


async def test_fallback_setting_lets_castbrick_swap_the_sender(server: SharedServer) -> None:
    """With the location's fallback on, CastBrick sends from its default sender instead."""
    env = server.sandbox()
    result = await env.gateway(base_path="", fallback=True).send(_request(sender_id="UNKNOWN"))
    assert env.sandbox.messages[result.gateway_message_id or ""].sender_id == (
        CASTBRICK_DEFAULT_SENDER
    )


async def test_status_follows_the_timeline(server: SharedServer) -> None:
    """Queued and Sent are pending (never "sent"), Delivered is terminal with its time."""
    env = server.sandbox()
    gateway = env.gateway(base_path="")
    sent_at = env.now()
    message_id = (await gateway.send(_request())).gateway_message_id or ""
    seen = []
    for step in (0.0, 1.5, 2.0):
        env.clock.advance(step)
        status = await gateway.status(message_id, to_e164=AO, sent_at=sent_at)
        seen.append((status.raw_status, status.state, status.terminal))
    assert seen == [
        ("Queued", "pending", False),
        ("Sent", "pending", False),
        ("Delivered", "delivered", True),
    ]
    assert status.gateway_message_id == message_id
    assert status.delivered_at is not None


async def test_failed_status_carries_the_reason(server: SharedServer) -> None:
    """An undeliverable number ends failed with CastBrick's errorMessage; lower-case statuses
    read the same."""
    env = server.sandbox(make_config(status_case="lower"))
    gateway = env.gateway(base_path="")
    message_id = (await gateway.send(_request(to=UNDELIVERABLE_NUMBER))).gateway_message_id
    env.clock.advance(5)
    status = await gateway.status(message_id or "", to_e164=UNDELIVERABLE_NUMBER)
    assert (status.raw_status, status.state, status.terminal) == ("failed", "failed", True)
    assert status.error_message == "Undeliverable: the handset is unreachable"


async def test_status_by_id_is_tried_first(server: SharedServer) -> None:
    """When GET /sms/{id} knows the id, one request answers the poll."""
    env = server.sandbox()
    gateway = env.gateway(base_path="")
    message_id = (await gateway.send(_request())).gateway_message_id or ""
    await gateway.status(message_id, to_e164=AO, sent_at=env.now())
    assert env.sandbox.stats.calls["GET /sms/{message_id}"] == 1
    assert env.sandbox.stats.calls["GET /sms"] == 0


async def test_status_falls_back_to_the_list_and_remembers(server: SharedServer) -> None:
    """If GET /sms/{id} does not take the batch messageId (items have their own ids), the
    poll finds the message in GET /sms by messageId, and stops asking by id."""
    env = server.sandbox(make_config(recipient_ids="distinct"))
    gateway = env.gateway(base_path="")
    message_id = (await gateway.send(_request())).gateway_message_id or ""
    sent_at = env.now()
    first = await gateway.status(message_id, to_e164=AO, sent_at=sent_at)
    second = await gateway.status(message_id, to_e164=AO, sent_at=sent_at)
    assert first.gateway_message_id == second.gateway_message_id == message_id
    assert env.sandbox.stats.calls["GET /sms/{message_id}"] == 1
    assert env.sandbox.stats.calls["GET /sms"] == 2


async def test_status_of_an_unknown_message(server: SharedServer) -> None:
    """Neither path knows the id: NotFoundError."""
    env = server.sandbox()
    with pytest.raises(NotFoundError):
        await env.gateway(base_path="").status("no-such-id", to_e164=AO, sent_at=env.now())


async def test_unknown_statuses_stay_pending(server: SharedServer) -> None:
    """A status outside the table is logged and non-terminal."""
    gateway = server.canned_gateway(
        200, {"id": "m-1", "recipientPhone": AO, "message": "x", "status": "Rejected"}
    )
    status = await gateway.status("m-1", to_e164=AO)
    assert (status.state, status.terminal, status.raw_status) == ("pending", False, "Rejected")


@pytest.mark.parametrize("base_path", ["", "/v1"])
async def test_verify_credentials_returns_the_base_path(
    server: SharedServer, base_path: str
) -> None:
    """The credential check probes and hands back the base path to store, with the balance."""
    env = server.sandbox(make_config(base_path=base_path))
    check = await env.gateway().verify_credentials()
    assert check.settings_update == {"base_path": base_path}
    assert check.balance is not None
    assert (check.balance.amount, check.balance.currency, check.balance.unit) == (
        10_000.0,
        "AOA",
        "money",
    )


async def test_verify_credentials_refuses_a_bad_key(server: SharedServer) -> None:
    """A refused key raises CredentialsError (which pauses the account)."""
    env = server.sandbox()
    with pytest.raises(CredentialsError) as caught:
        await env.gateway(UNKNOWN_KEY).verify_credentials()
    assert caught.value.pauses_account


async def test_verify_credentials_accepts_an_sms_only_key(server: SharedServer) -> None:
    """A key that may send but not read the balance is valid: no balance, path stored."""
    env = server.sandbox()
    check = await env.gateway(SMS_ONLY_KEY).verify_credentials()
    assert (check.balance, check.settings_update) == (None, {"base_path": ""})


async def test_balance_and_unsupported_calls(server: SharedServer) -> None:
    """balance() reads AOA; sender_ids() and poll_inbound() are unsupported, not faked."""
    env = server.sandbox()
    gateway = env.gateway(base_path="")
    assert (await gateway.balance()).amount == 10_000.0
    with pytest.raises(UnsupportedError):
        await gateway.sender_ids()
    with pytest.raises(UnsupportedError):
        await gateway.poll_inbound(None, max_pages=1)


async def test_build_from_the_spec_probes_lazily_once(server: SharedServer) -> None:
    """SPEC.build makes a gateway from a stored account without a base path: its first call
    probes, later ones reuse the answer; a stored base path skips the probe."""
    env = server.sandbox(make_config(base_path="/v1"))
    defaults = CastBrickDefaults(_env_file=None, api_url=env.url, rate_limit=1000.0)  # type: ignore[call-arg]
    context = GatewayContext(
        http=env.http,
        pacer=LocalPacer(),
        account_bucket="acct:1",
        ip_bucket="ip:castbrick",
        defaults=defaults,
    )

    def account(settings: CastBrickAccountSettings) -> AccountConfig:
        return AccountConfig(
            account_id=1,
            gateway="castbrick",
            api_key=DEFAULT_API_KEY,
            api_url=env.url,
            sender_id=DEFAULT_SENDER_ID,
            channel="sms",
            settings=settings,
        )

    gateway = SPEC.build(account(CastBrickAccountSettings()), context)
    assert isinstance(gateway, CastBrickGateway)
    await gateway.send(_request("one"))
    await gateway.send(_request("two"))
    assert env.sandbox.stats.calls["GET /billing/balance"] == 1
    stored = SPEC.build(account(CastBrickAccountSettings(base_path="/v1")), context)
    await stored.send(_request("three"))
    assert env.sandbox.stats.calls["GET /billing/balance"] == 1
    assert env.sandbox.stats.calls["POST /sms/send"] == 3


async def test_spec_describes_the_gateway(server: SharedServer) -> None:
    """The registry entry names CastBrick's models and key check."""
    assert SPEC.name == "castbrick"
    assert SPEC.defaults is CastBrickDefaults
    assert SPEC.account_settings is CastBrickAccountSettings
    assert SPEC.default_channel == "sms"
    assert SPEC.check_key("cb_live_xxxxxxxxxxxx") is None
