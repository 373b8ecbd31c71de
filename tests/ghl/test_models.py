"""Typed payloads: every fixture parses, request models serialise as HighLevel expects."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from castbridge.ghl.models import (
    AppEvent,
    InboundMessageBody,
    InboundMessageResult,
    LocationTokenResponse,
    ProviderOutboundMessage,
    StatusErrorDetail,
    TokenResponse,
    UpdateMessageStatusBody,
    UpsertContactBody,
)
from tests.ghl.conftest import fixture_bytes


def load(name: str) -> object:
    return json.loads(fixture_bytes(name))


def test_delivery_payloads_parse() -> None:
    """The SMS and Custom delivery fixtures parse; optional fields may be missing."""
    sms = ProviderOutboundMessage.model_validate(load("delivery_sms.json"))
    assert sms.message_id == "GKJxs4P5L8dWc5CFUITM"
    assert sms.webhook_id is None
    custom = ProviderOutboundMessage.model_validate(load("delivery_custom_unicode.json"))
    assert custom.type == "Custom"
    assert custom.webhook_id == "wh_delivery_1"
    assert "+639171234567" not in repr(custom)  # phone and text stay out of reprs


@pytest.mark.parametrize(
    "name",
    [
        "install_location.json",
        "install_company.json",
        "uninstall_location.json",
        "uninstall_company.json",
    ],
)
def test_app_events_parse(name: str) -> None:
    """INSTALL and UNINSTALL fixtures (location and agency) parse."""
    event = AppEvent.model_validate(load(name))
    assert event.app_id == "ve9EPM428h8vShlRW1KT"
    assert event.location_id or event.company_id


def test_token_responses_parse_and_hide_tokens() -> None:
    """Token responses parse, and tokens never appear in a repr."""
    location = TokenResponse.model_validate(load("token_location.json"))
    company = TokenResponse.model_validate(load("token_company.json"))
    minted = LocationTokenResponse.model_validate(load("location_token.json"))
    assert location.resource_id == location.location_id
    assert company.resource_id == company.company_id
    assert company.approved_locations == ["l1C08ntBrFjLS0elLIYU", "l2C08ntBrFjLS0elLIYU"]
    assert minted.user_type == "Location"
    assert minted.refresh_token is None
    for model in (location, company, minted):
        assert "fixture-" not in repr(model)


def test_inbound_response_parses() -> None:
    """The inbound response fixture parses with its messageId."""
    result = InboundMessageResult.model_validate(load("inbound_response.json"))
    assert result.message_id == "t22c6DQcTDf3MjRhwf77"


def test_inbound_body_is_always_inbound_sms() -> None:
    """The inbound body always says direction inbound and type SMS, camelCase on the wire."""
    body = InboundMessageBody(
        contact_id="c",
        conversation_provider_id="p",
        message="hi",
        date=datetime(2026, 9, 1, 3, 15, tzinfo=UTC),
        alt_id="cast-1",
    ).wire()
    assert body["direction"] == "inbound"
    assert body["type"] == "SMS"
    assert body["altId"] == "cast-1"
    assert body["date"] == "2026-09-01T03:15:00Z"
    assert "conversationId" not in body
    with pytest.raises(ValidationError):
        InboundMessageBody(
            contact_id="c",
            conversation_provider_id="p",
            message="hi",
            date=datetime(2026, 9, 1, 3, 15),  # naive
            alt_id="cast-1",
        )


def test_status_body_rejects_sent_and_partial_errors() -> None:
    """`sent` is not a HighLevel status, and an error needs code, type and message."""
    with pytest.raises(ValidationError):
        UpdateMessageStatusBody.model_validate({"status": "sent"})
    with pytest.raises(ValidationError):
        StatusErrorDetail.model_validate({"code": "1"})
    body = UpdateMessageStatusBody(
        status="failed", error=StatusErrorDetail(code="1", message="no credit")
    ).wire()
    assert body == {
        "status": "failed",
        "error": {"code": "1", "type": "saas", "message": "no credit"},
    }


def test_upsert_body_has_no_tags_field() -> None:
    """Tags cannot even be given to the upsert body (they would overwrite the contact's)."""
    assert "tags" not in UpsertContactBody.model_fields
    with pytest.raises(ValidationError):
        UpsertContactBody.model_validate({"locationId": "l", "phone": "+1", "tags": ["x"]})
