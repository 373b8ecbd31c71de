"""Typed HighLevel payloads: what the client sends and gets back, and the webhooks we receive.

Field names follow HighLevel (camelCase aliases) on the wire and snake_case in Python. Response
models ignore unknown fields, because HighLevel adds fields without notice; request models
forbid them, so a typo cannot reach HighLevel silently.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

UserType = Literal["Location", "Company"]
MessageStatus = Literal["delivered", "failed", "pending", "read"]
MESSAGE_STATUSES: frozenset[str] = frozenset({"delivered", "failed", "pending", "read"})


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    def wire(self) -> dict[str, Any]:
        """The JSON object HighLevel expects: aliases, no nulls."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- OAuth --------------------------------------------------------------------------------


class TokenResponse(_Response):
    """`POST /oauth/token` success (`GetAccessCodeSuccessfulResponseDto`)."""

    access_token: str = Field(repr=False)
    token_type: str = "Bearer"
    expires_in: float = 86399
    refresh_token: str | None = Field(None, repr=False)
    scope: str = ""
    user_type: UserType = Field("Location", alias="userType")
    location_id: str | None = Field(None, alias="locationId")
    company_id: str | None = Field(None, alias="companyId")
    user_id: str | None = Field(None, alias="userId")
    plan_id: str | None = Field(None, alias="planId")
    approved_locations: list[str] = Field(default_factory=list, alias="approvedLocations")
    is_bulk_installation: bool | None = Field(None, alias="isBulkInstallation")
    install_to_future_locations: bool | None = Field(None, alias="installToFutureLocations")
    approve_all_locations: bool | None = Field(None, alias="approveAllLocations")

    @property
    def resource_id(self) -> str | None:
        return self.location_id if self.user_type == "Location" else self.company_id


class LocationTokenResponse(_Response):
    """`POST /oauth/locationToken` success; `refresh_token` is not in the v2 schema but is
    returned in practice (ghl.md §6.4, issue #285), so it is kept when present."""

    access_token: str = Field(repr=False)
    token_type: str = "Bearer"
    expires_in: float = 86399
    refresh_token: str | None = Field(None, repr=False)
    scope: str = ""
    location_id: str = Field(alias="locationId")
    plan_id: str | None = Field(None, alias="planId")
    user_id: str | None = Field(None, alias="userId")
    app_id: str | None = Field(None, alias="appId")
    version_id: str | None = Field(None, alias="versionId")

    @property
    def user_type(self) -> UserType:
        return "Location"


class InstalledLocation(_Response):
    id: str = Field(alias="_id")
    name: str = ""
    address: str | None = None
    is_installed: bool | None = Field(None, alias="isInstalled")
    version_id: str | None = Field(None, alias="versionId")
    installed_at: datetime | None = Field(None, alias="installedAt")


class InstalledLocationsPage(_Response):
    locations: list[InstalledLocation] = Field(default_factory=list)
    count: int | None = None
    install_to_future_locations: bool | None = Field(None, alias="installToFutureLocations")


# --- conversations ------------------------------------------------------------------------


class StatusErrorDetail(_Request):
    """`ErrorDto`: shown to the user in HighLevel; all three fields are required."""

    code: str = Field(min_length=1)
    type: str = Field("saas", min_length=1)
    message: str = Field(min_length=1)


class UpdateMessageStatusBody(_Request):
    """`UpdateMessageStatusDto` for an SMS provider (no email fields). `sent` is not valid."""

    status: MessageStatus
    error: StatusErrorDetail | None = None


class MessageStatusResult(_Response):
    """`SendMessageResponseDto`; all optional here because a 200 is what matters."""

    conversation_id: str | None = Field(None, alias="conversationId")
    message_id: str | None = Field(None, alias="messageId")
    status: str | None = None
    trace_id: str | None = Field(None, alias="traceId")


class InboundMessageBody(_Request):
    """`ProcessMessageBodyDto` as an SMS provider sends it (ghl.md §9).

    `direction` is always "inbound": HighLevel's default is outbound (pitfall #4).
    """

    type: Literal["SMS"] = "SMS"
    contact_id: str = Field(alias="contactId", min_length=1)
    conversation_id: str | None = Field(None, alias="conversationId")
    conversation_provider_id: str = Field(alias="conversationProviderId", min_length=1)
    message: str
    attachments: list[str] = Field(default_factory=list)
    direction: Literal["inbound"] = "inbound"
    date: datetime
    alt_id: str = Field(alias="altId", min_length=1)

    @field_validator("date")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("date must be timezone-aware (UTC)")
        return value


class InboundMessageResult(_Response):
    """`ProcessMessageResponseDto`; the client refuses a 2xx without `messageId` (issue #70)."""

    success: bool | None = None
    conversation_id: str | None = Field(None, alias="conversationId")
    message_id: str = Field(alias="messageId", min_length=1)
    message: str | None = None
    contact_id: str | None = Field(None, alias="contactId")
    date_added: datetime | None = Field(None, alias="dateAdded")
    trace_id: str | None = Field(None, alias="traceId")


class Conversation(_Response):
    id: str
    contact_id: str | None = Field(None, alias="contactId")
    location_id: str | None = Field(None, alias="locationId")
    type: str | None = None
    last_message_type: str | None = Field(None, alias="lastMessageType")


class ConversationSearchResult(_Response):
    conversations: list[Conversation] = Field(default_factory=list)
    total: int | None = None


class CreateConversationResult(_Response):
    success: bool | None = None
    conversation: Conversation


class Message(_Response):
    """`GetMessageResponseDto` (only what castbridge reads; enums kept as plain strings)."""

    id: str
    location_id: str | None = Field(None, alias="locationId")
    contact_id: str | None = Field(None, alias="contactId")
    conversation_id: str | None = Field(None, alias="conversationId")
    message_type: str | None = Field(None, alias="messageType")
    direction: str | None = None
    status: str | None = None
    body: str | None = Field(None, repr=False)
    source: str | None = None
    conversation_provider_id: str | None = Field(None, alias="conversationProviderId")
    alt_id: str | None = Field(None, alias="altId")
    date_added: str | None = Field(None, alias="dateAdded")


class ConversationMessages(_Response):
    """`GetMessagesByConversationResponseDto`: a page of a conversation's messages, newest
    first; each carries `altId` since June 2025 (issue #38)."""

    last_message_id: str | None = Field(None, alias="lastMessageId")
    next_page: bool | None = Field(None, alias="nextPage")
    messages: list[Message] = Field(default_factory=list)


# --- users --------------------------------------------------------------------------------


class UserRoles(_Response):
    """`RoleSchema`: "account" (sub-account) or "agency" user, "admin" or "user"."""

    type: str | None = None
    role: str | None = None
    location_ids: list[str] = Field(default_factory=list, alias="locationIds")


class User(_Response):
    """`GET /users/{userId}` (`UserSuccessfulResponseDto`): only what the settings page checks."""

    id: str
    roles: UserRoles = Field(default_factory=UserRoles)
    permissions: dict[str, Any] = Field(default_factory=dict)

    @property
    def settings_enabled(self) -> bool:
        return self.permissions.get("settingsEnabled") is True


# --- contacts -----------------------------------------------------------------------------


class Contact(_Response):
    id: str
    location_id: str | None = Field(None, alias="locationId")
    phone: str | None = Field(None, repr=False)
    first_name: str | None = Field(None, alias="firstName", repr=False)
    last_name: str | None = Field(None, alias="lastName", repr=False)
    name: str | None = Field(
        None, validation_alias=AliasChoices("name", "contactName", "fullName"), repr=False
    )


class UpsertContactBody(_Request):
    """`UpsertContactDto` without `tags`: sending tags overwrites all of them (pitfall #15)."""

    location_id: str = Field(alias="locationId", min_length=1)
    phone: str = Field(min_length=1)
    name: str | None = None
    first_name: str | None = Field(None, alias="firstName")
    last_name: str | None = Field(None, alias="lastName")
    source: str | None = None
    country: str | None = None


DndStatus = Literal["active", "inactive", "permanent"]


class DndSetting(_Request):
    """`DndSettingSchema`: one channel's do-not-disturb."""

    status: DndStatus
    message: str | None = None
    code: str | None = None


class SmsDndBody(_Request):
    """`UpdateContactDto` with only `dndSettings.SMS`: the boolean `dnd` would cover every
    channel and `tags` would overwrite all tags (ghl.md §10)."""

    dnd_settings: dict[Literal["SMS"], DndSetting] = Field(alias="dndSettings")


class UpdateContactResult(_Response):
    succeded: bool | None = None  # sic: HighLevel's own spelling
    contact: Contact | None = None


class UpsertContactResult(_Response):
    new: bool | None = None
    contact: Contact
    trace_id: str | None = Field(None, alias="traceId")


# --- webhooks we receive ------------------------------------------------------------------

# Longest id castbridge keys a message by; HighLevel's are 20 characters.
MAX_ID_CHARS = 64


class ProviderOutboundMessage(_Response):
    """A Delivery URL post (ghl.md §2), read leniently.

    Only `messageId` and `locationId` must be readable: without them a post can never
    succeed (400). Every other field is taken as it comes and judged by intake, which stores
    the message and reports `failed` with a reason instead of answering 4xx (pitfall #23).
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    message_id: str = Field(alias="messageId", min_length=1, max_length=MAX_ID_CHARS)
    location_id: str = Field(alias="locationId", min_length=1, max_length=MAX_ID_CHARS)
    contact_id: Any = Field(None, alias="contactId")
    type: Any = "SMS"
    phone: Any = Field(None, repr=False)
    message: Any = Field(None, repr=False)
    attachments: Any = None
    user_id: Any = Field(None, alias="userId")
    reply_to_alt_id: Any = Field(None, alias="replyToAltId")
    timestamp: Any = None
    webhook_id: Any = Field(None, alias="webhookId")

    @field_validator("message_id", "location_id", mode="before")
    @classmethod
    def _readable_id(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
        return value


class AppEvent(_Response):
    """An app webhook on the Default Webhook URL (ghl.md §5); only `type` is required, the rest
    depends on it (INSTALL, UNINSTALL; others are acknowledged and ignored)."""

    type: str = Field(min_length=1, max_length=64)
    app_id: str | None = Field(None, alias="appId", max_length=128)
    location_id: str | None = Field(None, alias="locationId", max_length=MAX_ID_CHARS)
    company_id: str | None = Field(None, alias="companyId", max_length=MAX_ID_CHARS)
    user_id: str | None = Field(None, alias="userId", max_length=MAX_ID_CHARS)
    plan_id: str | None = Field(None, alias="planId", max_length=128)
    company_name: str | None = Field(None, alias="companyName", max_length=256)
    install_type: str | None = Field(None, alias="installType", max_length=64)
    version_id: str | None = Field(None, alias="versionId", max_length=128)
    timestamp: str | None = Field(None, max_length=64)
    webhook_id: str | None = Field(None, alias="webhookId", max_length=128)
    conversation_provider_id: str | None = Field(
        None, alias="conversationProviderId", max_length=128
    )
