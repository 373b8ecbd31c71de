"""The sandbox's own models of what HighLevel accepts; a mismatch is answered 422.

They follow HighLevel's OpenAPI files (ghl-openapi/), independently of castbridge's client
models, so the sandbox checks the client instead of agreeing with it by construction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenForm(_Strict):
    """`GetAccessCodebodyDto` (form-encoded)."""

    client_id: str
    client_secret: str
    grant_type: Literal["authorization_code", "refresh_token", "client_credentials"]
    code: str | None = None
    refresh_token: str | None = None
    user_type: Literal["Company", "Location"] | None = None
    redirect_uri: str | None = None


class LocationTokenForm(_Strict):
    """`GetLocationAccessCodeBodyDto` (form-encoded). camelCase as on the wire."""

    companyId: str = Field(min_length=1)
    locationId: str = Field(min_length=1)


class StatusError(_Strict):
    """`ErrorDto`: all three required."""

    code: str
    type: str
    message: str


class UpdateMessageStatus(_Strict):
    """`UpdateMessageStatusDto`; `sent` is not a member of the enum."""

    status: Literal["delivered", "failed", "pending", "read"]
    error: StatusError | None = None
    emailMessageId: str | None = None
    recipients: list[str] | None = None


MessageType = Literal[
    "SMS",
    "RCS",
    "Email",
    "WhatsApp",
    "GMB",
    "IG",
    "FB",
    "Custom",
    "WebChat",
    "Live_Chat",
    "Call",
    "IVR_Call",
    "Campaign_Call",
    "Campaign_VoiceMail",
    "TIKTOK",
    "ALL_IN_ONE_CHAT",
    "FORM_SUBMISSION",
]


class ProcessInboundMessage(_Strict):
    """`ProcessMessageBodyDto`. The spec types `direction` as an object defaulting to
    outbound; HighLevel takes the strings, so the sandbox does too (and defaults to outbound,
    as HighLevel does — pitfall #4)."""

    type: MessageType
    attachments: list[str] | None = None
    message: str | None = None
    conversationId: str | None = None
    contactId: str | None = None
    conversationProviderId: str | None = None
    html: str | None = None
    subject: str | None = None
    emailFrom: str | None = None
    emailTo: str | None = None
    emailCc: list[str] | None = None
    emailBcc: list[str] | None = None
    emailMessageId: str | None = None
    altId: str | None = None
    direction: Literal["inbound", "outbound"] = "outbound"
    date: datetime | None = None
    call: dict[str, object] | None = None


class CreateConversation(_Strict):
    locationId: str = Field(min_length=1)
    contactId: str = Field(min_length=1)


class DndSetting(_Strict):
    """`DndSettingSchema`."""

    status: Literal["active", "inactive", "permanent"]
    message: str | None = None
    code: str | None = None


class UpdateContact(BaseModel):
    """`UpdateContactDto`: every field optional; other documented fields pass."""

    model_config = ConfigDict(extra="allow")

    dndSettings: (
        dict[Literal["Call", "Email", "SMS", "WhatsApp", "GMB", "FB"], DndSetting] | None
    ) = None
    tags: list[str] | None = None


class UpsertContact(BaseModel):
    """`UpsertContactDto`: only `locationId` is required; other documented fields pass."""

    model_config = ConfigDict(extra="allow")

    locationId: str = Field(min_length=1)
    phone: str | None = None
    name: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    email: str | None = None
    source: str | None = None
    country: str | None = None
    tags: list[str] | None = None
    createNewIfDuplicateAllowed: bool | None = None


# --- admin endpoints ----------------------------------------------------------------------


class DeliverRequest(_Strict):
    url: str
    phone: str
    message: str
    locationId: str | None = None
    contactId: str | None = None
    attachments: list[str] | None = None
    type: str = "SMS"
    webhookFields: bool = False


class EventRequest(_Strict):
    url: str
    type: Literal["INSTALL", "UNINSTALL"]
    locationId: str | None = None
    companyId: str | None = None
    rsa: bool = False
    ed25519: bool = True


class LocationRequest(_Strict):
    locationId: str | None = None
    companyId: str | None = None
    name: str = ""
    active: bool | None = None


class FaultsRequest(_Strict):
    faultRate: float | None = Field(None, ge=0, le=1)
    dropInbound: bool | None = None
    notDownstreamedSeconds: float | None = Field(None, ge=0)


class CodeRequest(_Strict):
    redirectUri: str = "http://127.0.0.1/oauth/callback"
    locationId: str | None = None
    userType: Literal["Location", "Company"] = "Location"
    scope: str = ""
