"""The HighLevel API client: typed calls over an injected httpx2.AsyncClient (ghl.md §6-§10).

Every call goes through `_send`: pinned `Version` header from versions.py, the location's
bearer via `LocationAuth` (refresh once on 401), the per-location rate limiter, one log line
with HighLevel's `traceId`, and the one status-to-error mapping in errors.py.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx2
from pydantic import BaseModel, ValidationError

from castbridge import metrics
from castbridge.config import Settings
from castbridge.ghl.auth import (
    BearerAuth,
    GrantKey,
    LocationAuth,
    TokenProvider,
    TokenStore,
    bucket_for,
    lease_for,
)
from castbridge.ghl.errors import (
    GHLError,
    PermanentRequestError,
    RateLimitedError,
    UnexpectedResponseError,
    error_from_response,
    error_from_transport,
    json_body,
    trace_id_of,
)
from castbridge.ghl.models import (
    Contact,
    Conversation,
    ConversationMessages,
    ConversationSearchResult,
    CreateConversationResult,
    DndSetting,
    DndStatus,
    InboundMessageBody,
    InboundMessageResult,
    InstalledLocation,
    InstalledLocationsPage,
    LocationTokenResponse,
    Message,
    MessageStatusResult,
    SmsDndBody,
    StatusErrorDetail,
    TokenResponse,
    UpdateContactResult,
    UpdateMessageStatusBody,
    UpsertContactBody,
    UpsertContactResult,
    User,
    UserType,
)
from castbridge.ghl.versions import (
    CONVERSATION_MESSAGES,
    CREATE_CONVERSATION,
    DUPLICATE_CONTACT,
    GET_MESSAGE,
    GET_USER,
    INBOUND_MESSAGE,
    MESSAGE_STATUS,
    OAUTH_INSTALLED_LOCATIONS,
    OAUTH_LOCATION_TOKEN,
    OAUTH_TOKEN,
    SEARCH_CONVERSATIONS,
    UPDATE_CONTACT,
    UPSERT_CONTACT,
    Endpoint,
)
from castbridge.limits import Limit, Pacer
from castbridge.logging import get_logger

log = get_logger(__name__)

M = TypeVar("M", bound=BaseModel)

INSTALLED_LOCATIONS_PAGE = 100
RATE_LIMIT_BURST = 10.0
MAX_PAGES = 1000


def app_id_from_client_id(client_id: str) -> str:
    """HighLevel's app id is the part of the client id before the first `-` (ghl.md §5)."""
    return client_id.split("-", 1)[0]


class GHLClient:
    """HighLevel for one Marketplace app. Hand it the shared AsyncClient; it never makes one."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        token_provider: TokenProvider,
        pacer: Pacer,
        limit: Limit,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._tokens = token_provider
        self._pacer = pacer
        self._limit = limit

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        http: httpx2.AsyncClient,
        token_store: TokenStore,
        *,
        pacer: Pacer,
    ) -> GHLClient:
        """The client as castbridge runs it: GHL_* settings, a TokenProvider over `token_store`
        and per-location buckets at GHL_RATE_LIMIT (burst 10, under 100 requests / 10 s)."""
        secret = settings.ghl_client_secret
        return cls(
            http,
            base_url=settings.ghl_api_url,
            client_id=settings.ghl_client_id or "",
            client_secret=secret.get_secret_value() if secret is not None else "",
            token_provider=TokenProvider(
                token_store, lease_duration=lease_for(settings.ghl_timeout_seconds)
            ),
            pacer=pacer,
            limit=Limit(settings.ghl_rate_limit, RATE_LIMIT_BURST),
        )

    def with_pacer(self, pacer: Pacer) -> GHLClient:
        """The same client (tokens, HTTP pool) pacing through `pacer` instead: the worker's
        refuses when a bucket is empty, the web app's and the CLI's wait."""
        return GHLClient(
            self._http,
            base_url=self._base_url,
            client_id=self._client_id,
            client_secret=self._client_secret,
            token_provider=self._tokens,
            pacer=pacer,
            limit=self._limit,
        )

    @property
    def token_provider(self) -> TokenProvider:
        return self._tokens

    @property
    def pacer(self) -> Pacer:
        return self._pacer

    def _credentials(self) -> dict[str, str]:
        if not self._client_id or not self._client_secret:
            raise PermanentRequestError(
                "GHL_CLIENT_ID and GHL_CLIENT_SECRET must be set to talk to HighLevel",
                operation=OAUTH_TOKEN.name,
            )
        return {"client_id": self._client_id, "client_secret": self._client_secret}

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def app_id(self) -> str:
        return app_id_from_client_id(self._client_id)

    # --- plumbing -------------------------------------------------------------------------

    async def _send(
        self,
        endpoint: Endpoint,
        *,
        path: str | None = None,
        location_id: str | None = None,
        company_id: str | None = None,
        bearer: str | None = None,
        json: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        refresh: bool = False,
    ) -> httpx2.Response:
        headers = {"Accept": "application/json"}
        if endpoint.version is not None:
            headers["Version"] = endpoint.version
        auth: httpx2.Auth | None = None
        if location_id is not None:
            auth = LocationAuth(
                self._tokens, GrantKey.location(location_id), self, self._pacer, self._limit
            )
        elif bearer is not None:
            auth = BearerAuth(bearer)
            if company_id is not None:
                await self._pacer.take(bucket_for(company_id), self._limit)
        elif company_id is not None:
            auth = LocationAuth(
                self._tokens, GrantKey.company(company_id), self, self._pacer, self._limit
            )
        started = time.monotonic()
        try:
            response = await self._http.request(
                endpoint.method,
                self._base_url + (path or endpoint.path),
                headers=headers,
                json=json,
                data=form,
                params=params,
                auth=auth,
            )
        except httpx2.HTTPError as exc:
            network_error = error_from_transport(exc, endpoint)
            metrics.GHL_CALLS.labels(endpoint.name, "network").inc()
            log.warning(
                "ghl_call_failed",
                operation=endpoint.name,
                location_id=location_id,
                error=str(network_error),
            )
            raise network_error from None
        elapsed_ms = int((time.monotonic() - started) * 1000)
        metrics.GHL_CALLS.labels(endpoint.name, str(response.status_code)).inc()
        # A call HighLevel answered 2xx is counted in /metrics and logged only at DEBUG: at INFO
        # it was a line per report nobody reads; anything else keeps its line (and trace id).
        (log.debug if response.is_success else log.info)(
            "ghl_call",
            operation=endpoint.name,
            status=response.status_code,
            trace_id=trace_id_of(response),
            location_id=location_id,
            duration_ms=elapsed_ms,
        )
        if response.is_success:
            return response
        error = error_from_response(response, endpoint, refresh=refresh)
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            key = location_id or company_id
            if key is not None:
                await self._pacer.pause(bucket_for(key), self._limit, error.retry_after)
        raise error

    @staticmethod
    def _parse(model: type[M], response: httpx2.Response, endpoint: Endpoint) -> M:
        body = json_body(response)
        try:
            return model.model_validate(body)
        except ValidationError:
            raise UnexpectedResponseError(
                f"HighLevel answered {response.status_code} with an unexpected body",
                status_code=response.status_code,
                trace_id=trace_id_of(response, body),
                operation=endpoint.name,
            ) from None

    # --- OAuth ----------------------------------------------------------------------------

    async def exchange_code(
        self, code: str, redirect_uri: str, user_type: UserType | None = None
    ) -> TokenResponse:
        """Trade the install redirect's `code` for a Location or Company token pair."""
        form = {
            **self._credentials(),
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
        }
        if user_type is not None:
            form["user_type"] = user_type
        response = await self._send(OAUTH_TOKEN, form=form)
        return self._parse(TokenResponse, response, OAUTH_TOKEN)

    async def refresh(self, refresh_token: str, user_type: UserType) -> TokenResponse:
        """Use a refresh token (single-use: persist the returned pair before anything else).

        Raises NeedsReinstallError when HighLevel refuses the grant and LocationInactiveError
        for "Location is not active". Call it through TokenProvider, never directly.
        """
        form = {
            **self._credentials(),
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "user_type": user_type,
        }
        response = await self._send(OAUTH_TOKEN, form=form, refresh=True)
        return self._parse(TokenResponse, response, OAUTH_TOKEN)

    async def location_token(
        self, company_token: str, company_id: str, location_id: str
    ) -> LocationTokenResponse:
        """Mint a Location token with this Company token (form-encoded, ghl.md §6.4)."""
        return await self._location_token(company_token, company_id, location_id)

    async def mint_location_token(self, company_id: str, location_id: str) -> LocationTokenResponse:
        """Mint a Location token with the stored Company token of `company_id` (refreshed as
        needed, once on 401). Store the result with `upsert_installation(..., company_id=)`."""
        return await self._location_token(None, company_id, location_id)

    async def _location_token(
        self, company_token: str | None, company_id: str, location_id: str
    ) -> LocationTokenResponse:
        response = await self._send(
            OAUTH_LOCATION_TOKEN,
            bearer=company_token,
            company_id=company_id,
            form={"companyId": company_id, "locationId": location_id},
        )
        return self._parse(LocationTokenResponse, response, OAUTH_LOCATION_TOKEN)

    async def installed_locations(
        self,
        company_token: str | None,
        company_id: str,
        app_id: str | None = None,
        *,
        page_size: int = INSTALLED_LOCATIONS_PAGE,
    ) -> list[InstalledLocation]:
        """Every location of the company where this app is installed (all pages).

        `company_token=None` uses the stored Company token of `company_id`.
        """
        found: list[InstalledLocation] = []
        skip = 0
        for _ in range(MAX_PAGES):
            response = await self._send(
                OAUTH_INSTALLED_LOCATIONS,
                bearer=company_token,
                company_id=company_id,
                params={
                    "companyId": company_id,
                    "appId": app_id or self.app_id,
                    "isInstalled": "true",
                    "skip": str(skip),
                    "limit": str(page_size),
                },
            )
            page = self._parse(InstalledLocationsPage, response, OAUTH_INSTALLED_LOCATIONS)
            found.extend(page.locations)
            skip += len(page.locations)
            # HighLevel documents no maximum page size (its default is 20), so a page shorter
            # than asked proves nothing: only `count`, or an empty page, ends the listing.
            if not page.locations or (page.count is not None and skip >= page.count):
                break
        return found

    # --- conversations --------------------------------------------------------------------

    async def update_message_status(
        self,
        location_id: str,
        message_id: str,
        status: str,
        error: StatusErrorDetail | Mapping[str, str] | None = None,
    ) -> MessageStatusResult:
        """Report delivered / failed / pending / read for a message HighLevel sent through us.

        A 403 raises NotDownstreamedError (retry later, bounded by the caller); `sent` is not a
        valid status and raises PermanentRequestError before any request is made.
        """
        try:
            detail = (
                error
                if error is None or isinstance(error, StatusErrorDetail)
                else StatusErrorDetail.model_validate(dict(error))
            )
            body = UpdateMessageStatusBody.model_validate({"status": status, "error": detail})
        except ValidationError:
            raise PermanentRequestError(
                f"invalid status update {status!r} (allowed: delivered, failed, pending, read; "
                "error needs code, type and message)",
                operation=MESSAGE_STATUS.name,
            ) from None
        response = await self._send(
            MESSAGE_STATUS,
            path=MESSAGE_STATUS.url_path(message_id=message_id),
            location_id=location_id,
            json=body.wire(),
        )
        if not response.content:
            return MessageStatusResult()
        return self._parse(MessageStatusResult, response, MESSAGE_STATUS)

    async def add_inbound_message(
        self,
        location_id: str,
        *,
        contact_id: str,
        message: str,
        conversation_provider_id: str,
        alt_id: str,
        date: datetime,
        conversation_id: str | None = None,
        attachments: Sequence[str] = (),
    ) -> InboundMessageResult:
        """Add an SMS the contact sent us (always `direction: inbound`, `type: SMS`).

        A 2xx without `messageId` means HighLevel dropped it (issue #70): that raises
        UnexpectedResponseError (retryable) instead of passing as success.
        """
        body = InboundMessageBody(
            contact_id=contact_id,
            conversation_id=conversation_id,
            conversation_provider_id=conversation_provider_id,
            message=message,
            attachments=list(attachments),
            date=date,
            alt_id=alt_id,
        )
        response = await self._send(INBOUND_MESSAGE, location_id=location_id, json=body.wire())
        payload = json_body(response)
        if not isinstance(payload, dict) or not payload.get("messageId"):
            raise UnexpectedResponseError(
                f"HighLevel answered {response.status_code} without a messageId: "
                "the inbound message was not stored",
                status_code=response.status_code,
                trace_id=trace_id_of(response, payload),
                operation=INBOUND_MESSAGE.name,
            )
        return self._parse(InboundMessageResult, response, INBOUND_MESSAGE)

    async def get_message(self, location_id: str, message_id: str) -> Message:
        response = await self._send(
            GET_MESSAGE, path=GET_MESSAGE.url_path(message_id=message_id), location_id=location_id
        )
        body = json_body(response)
        # The spec returns the message itself; some responses wrap it as {"message": {...}}.
        if isinstance(body, dict) and isinstance(body.get("message"), dict):
            body = body["message"]
        try:
            return Message.model_validate(body)
        except ValidationError:
            raise UnexpectedResponseError(
                "HighLevel returned an unreadable message",
                status_code=response.status_code,
                trace_id=trace_id_of(response),
                operation=GET_MESSAGE.name,
            ) from None

    async def conversation_messages(
        self, location_id: str, conversation_id: str, *, limit: int = 20
    ) -> list[Message]:
        """The conversation's latest SMS messages, newest first (to find an inbound add whose
        outcome was unknown by its `altId` before adding it again, ghl.md §9)."""
        response = await self._send(
            CONVERSATION_MESSAGES,
            path=CONVERSATION_MESSAGES.url_path(conversation_id=conversation_id),
            location_id=location_id,
            params={"limit": str(limit), "type": "TYPE_SMS"},
        )
        body = json_body(response)
        # Some answers nest the page as {"messages": {...}}.
        if isinstance(body, dict) and isinstance(body.get("messages"), dict):
            body = body["messages"]
        try:
            return ConversationMessages.model_validate(body).messages
        except ValidationError:
            raise UnexpectedResponseError(
                "HighLevel returned an unreadable message list",
                status_code=response.status_code,
                trace_id=trace_id_of(response),
                operation=CONVERSATION_MESSAGES.name,
            ) from None

    async def get_user(self, location_id: str, user_id: str) -> User:
        """A HighLevel user's roles and permissions, asked with the location's token (scope
        `users.readonly`): the settings page's stronger check of the payload's role."""
        response = await self._send(
            GET_USER, path=GET_USER.url_path(user_id=user_id), location_id=location_id
        )
        return self._parse(User, response, GET_USER)

    async def search_conversations(self, location_id: str, contact_id: str) -> list[Conversation]:
        response = await self._send(
            SEARCH_CONVERSATIONS,
            location_id=location_id,
            params={"locationId": location_id, "contactId": contact_id},
        )
        return self._parse(ConversationSearchResult, response, SEARCH_CONVERSATIONS).conversations

    async def create_conversation(self, location_id: str, contact_id: str) -> Conversation:
        response = await self._send(
            CREATE_CONVERSATION,
            location_id=location_id,
            json={"locationId": location_id, "contactId": contact_id},
        )
        return self._parse(CreateConversationResult, response, CREATE_CONVERSATION).conversation

    # --- contacts -------------------------------------------------------------------------

    async def find_contact_by_phone(self, location_id: str, e164: str) -> Contact | None:
        """The contact with this number per `/contacts/search/duplicate`, or None."""
        response = await self._send(
            DUPLICATE_CONTACT,
            location_id=location_id,
            params={"locationId": location_id, "number": e164},
        )
        body = json_body(response)
        contact = body.get("contact") if isinstance(body, dict) else None
        if not contact:
            return None
        try:
            return Contact.model_validate(contact)
        except ValidationError:
            raise UnexpectedResponseError(
                "HighLevel returned an unreadable contact",
                status_code=response.status_code,
                trace_id=trace_id_of(response, body),
                operation=DUPLICATE_CONTACT.name,
            ) from None

    async def upsert_contact(
        self,
        location_id: str,
        phone: str,
        *,
        name: str | None = None,
        source: str | None = None,
        country: str | None = None,
    ) -> UpsertContactResult:
        """Create or update the contact for `phone`. Never sends `tags` (it overwrites them)."""
        body = UpsertContactBody(
            location_id=location_id, phone=phone, name=name, source=source, country=country
        )
        response = await self._send(UPSERT_CONTACT, location_id=location_id, json=body.wire())
        return self._parse(UpsertContactResult, response, UPSERT_CONTACT)

    async def set_sms_dnd(
        self,
        location_id: str,
        contact_id: str,
        status: DndStatus,
        *,
        message: str | None = None,
        code: str | None = None,
    ) -> UpdateContactResult:
        """Set the contact's SMS do-not-disturb only (`PUT /contacts/{id}` with
        `dndSettings.SMS`): `active` after an opt-out, `inactive` after an opt-in."""
        body = SmsDndBody.model_validate(
            {"dndSettings": {"SMS": DndSetting(status=status, message=message, code=code)}}
        )
        response = await self._send(
            UPDATE_CONTACT,
            path=UPDATE_CONTACT.url_path(contact_id=contact_id),
            location_id=location_id,
            json=body.wire(),
        )
        if not response.content:
            return UpdateContactResult()
        return self._parse(UpdateContactResult, response, UPDATE_CONTACT)


__all__ = ["GHLClient", "GHLError", "app_id_from_client_id"]
