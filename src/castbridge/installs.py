"""Installing and uninstalling the app: OAuth install, agency tokens, INSTALL/UNINSTALL events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from castbridge.ghl.auth import GrantKey
from castbridge.ghl.errors import GHLError
from castbridge.ghl.models import TokenResponse
from castbridge.logging import get_logger
from castbridge.store import installations
from castbridge.store import repository as repo
from castbridge.store.models import SeenWebhook

if TYPE_CHECKING:
    from castbridge.resources import Resources
    from castbridge.web.webhooks import AppEvent

log = get_logger(__name__)


class InstallError(Exception):
    """The install could not complete; `str()` is a sentence for the person installing.

    `status` is the HTTP status of the page that says so: 400 for a bad or used link, 503 when
    HighLevel could not be reached and trying again later may work.
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class EventRetry(Exception):
    """An event could not be handled for a passing reason (HighLevel unavailable): answer 5xx
    so HighLevel delivers it again."""


@dataclass(frozen=True, slots=True)
class InstallOutcome:
    user_type: str
    location_ids: list[str]
    company_id: str | None


@dataclass(frozen=True, slots=True)
class EventOutcome:
    handled: bool
    detail: str | None = None
    duplicate: bool = False


def redirect_uri(resources: Resources) -> str:
    base = resources.settings.public_url
    if not base:
        raise InstallError("CASTBRIDGE_PUBLIC_URL is not set, so HighLevel cannot call us back.")
    return f"{base}/oauth/callback"


async def start_install(resources: Resources) -> str:
    """The HighLevel choose-location URL, carrying a fresh single-use `state`."""
    settings = resources.settings
    if not settings.ghl_client_id:
        raise InstallError("GHL_CLIENT_ID is not set; the app cannot be installed yet.")
    callback = redirect_uri(resources)
    async with resources.sessions.begin() as session:
        state = await installations.create_oauth_state(session, settings.oauth_state_ttl_seconds)
    query = urlencode(
        {
            "response_type": "code",
            "redirect_uri": callback,
            "client_id": settings.ghl_client_id,
            "scope": settings.ghl_scopes,
            "state": state,
        }
    )
    return f"{settings.ghl_marketplace_url}/v2/oauth/chooselocation?{query}"


async def complete_install(resources: Resources, code: str, state: str | None) -> InstallOutcome:
    """Check `state`, trade `code` for tokens, store them; agency tokens mint location tokens.

    Installs started from the HighLevel Marketplace come back without our `state` (ghl.md §6.1),
    so a missing state is allowed; a state that is present must be one we issued, unexpired and
    unused, consumed atomically so a replayed callback fails.
    """
    if state is not None:
        async with resources.sessions.begin() as session:
            if not await installations.consume_oauth_state(session, state):
                raise InstallError(
                    "This install link has expired or was already used. Start the install again."
                )
    try:
        tokens = await resources.ghl.exchange_code(code, redirect_uri(resources))
    except GHLError as exc:
        log.warning("oauth_exchange_failed", error=str(exc))
        if exc.retryable:
            # HighLevel was down or slow: the code was probably fine, so do not blame it.
            raise InstallError(
                "HighLevel could not be reached to finish the install. "
                "Start the install again in a few minutes.",
                status=503,
            ) from None
        raise InstallError(
            "HighLevel did not accept the authorization code (it may have expired or been "
            "used already). Start the install again."
        ) from None
    missing = missing_scopes(tokens.scope, resources.settings.ghl_scopes)
    if missing:
        log.warning("oauth_scopes_missing", missing=" ".join(missing))
    if tokens.user_type == "Company":
        return await _install_company(resources, tokens)
    async with resources.sessions.begin() as session:
        info = await installations.upsert_installation(session, resources.secret_box, tokens)
        await installations.add_audit(
            session,
            "install",
            location_id=info.location_id,
            company_id=info.company_id,
            detail={"via": "oauth", "user_type": "Location", "missing_scopes": missing},
        )
    log.info("installed", location_id=info.location_id, company_id=info.company_id)
    return InstallOutcome("Location", [info.location_id or ""], info.company_id)


def missing_scopes(granted: str, wanted: str) -> list[str]:
    return sorted(set(wanted.split()) - set(granted.split()))


async def _install_company(resources: Resources, tokens: TokenResponse) -> InstallOutcome:
    async with resources.sessions.begin() as session:
        info = await installations.upsert_installation(session, resources.secret_box, tokens)
        await installations.add_audit(
            session,
            "install",
            company_id=info.company_id,
            detail={"via": "oauth", "user_type": "Company"},
        )
    company_id = info.company_id or info.resource_id
    try:
        minted = await mint_company_locations(resources, company_id, only=None)
    except GHLError as exc:
        # Listing the agency's locations failed. Without this the person installing got a
        # bare JSON 503 and a used-up link; the Company token is kept, and installing again
        # (or HighLevel's INSTALL event) mints the locations.
        log.warning("company_locations_failed", company_id=company_id, error=str(exc))
        raise InstallError(
            "castbridge is connected to your agency, but HighLevel did not list its "
            "sub-accounts just now. Start the install again in a few minutes to finish.",
            status=503 if exc.retryable else 400,
        ) from None
    return InstallOutcome("Company", minted, company_id)


async def mint_company_locations(
    resources: Resources,
    company_id: str,
    *,
    only: list[str] | None,
    raise_retryable: bool = False,
) -> list[str]:
    """Mint and store a Location token for each installed location (or just `only`).

    A location HighLevel refuses is skipped. With `raise_retryable`, a failure that may pass
    (HighLevel unavailable, rate-limited) is raised instead, so the caller can have HighLevel
    retry the whole event; minting again is harmless (the rows are upserted).
    """
    ghl = resources.ghl
    company_token = await ghl.token_provider.token(GrantKey.company(company_id), ghl)
    if only is None:
        located = await ghl.installed_locations(company_token.value, company_id)
        targets = [loc.id for loc in located if loc.is_installed is not False]
    else:
        targets = only
    minted: list[str] = []
    for location_id in targets:
        try:
            location_tokens = await ghl.location_token(company_token.value, company_id, location_id)
        except GHLError as exc:
            if raise_retryable and exc.retryable:
                raise
            log.warning(
                "location_token_failed",
                company_id=company_id,
                location_id=location_id,
                error=str(exc),
            )
            continue
        async with resources.sessions.begin() as session:
            await installations.upsert_installation(
                session, resources.secret_box, location_tokens, company_id=company_id
            )
            await installations.add_audit(
                session,
                "install",
                location_id=location_id,
                company_id=company_id,
                detail={"via": "company_token"},
            )
        minted.append(location_id)
    log.info("company_locations_minted", company_id=company_id, count=len(minted))
    return minted


async def handle_event_once(resources: Resources, event: AppEvent) -> EventOutcome:
    """`handle_event`, skipping a `webhookId` already handled (a replay, ghl.md §4).

    The id is remembered only after the event was handled: remembering it first would make
    HighLevel's retry of an event that failed here (EventRetry, answered 5xx) look like a
    replay, and the event would be lost. Two copies racing in at once may both be handled,
    which is safe because INSTALL and UNINSTALL converge on the same rows.
    """
    if event.webhookId:
        async with resources.sessions() as session:
            if await session.get(SeenWebhook, event.webhookId) is not None:
                return EventOutcome(False, "duplicate webhookId", duplicate=True)
    outcome = await handle_event(resources, event)
    if event.webhookId:
        async with resources.sessions.begin() as session:
            await installations.remember_webhook(session, event.webhookId, event.type)
    return outcome


async def handle_event(resources: Resources, event: AppEvent) -> EventOutcome:
    """INSTALL and UNINSTALL; every other type is acknowledged and ignored."""
    kind = event.type.upper()
    app_id = resources.ghl.app_id if resources.settings.ghl_client_id else None
    if event.appId and app_id and event.appId != app_id:
        return EventOutcome(False, "event for another app; ignored")
    if kind == "INSTALL":
        return await _on_install(resources, event)
    if kind == "UNINSTALL":
        return await _on_uninstall(resources, event)
    return EventOutcome(False, f"{event.type} events are not used; ignored")


async def _on_install(resources: Resources, event: AppEvent) -> EventOutcome:
    """Converges with the OAuth callback whichever comes first (ordering is undocumented)."""
    location_id, company_id = event.locationId, event.companyId
    async with resources.sessions() as session:
        company = await installations.get_company_installation(session, company_id or "")
        existing = await installations.get_installation(session, location_id or "")
    if location_id and existing is not None and existing.active:
        return EventOutcome(True, "location already installed")
    if company is not None and company.active and company_id:
        try:
            minted = await mint_company_locations(
                resources,
                company_id,
                only=[location_id] if location_id else None,
                raise_retryable=True,
            )
        except GHLError as exc:
            # Acknowledging a transient failure would leave the location without a token for
            # good: HighLevel sends INSTALL once and the OAuth callback never comes for it.
            if exc.retryable:
                raise EventRetry(str(exc)) from exc
            log.warning("install_event_mint_failed", company_id=company_id, error=str(exc))
            return EventOutcome(False, "the agency token could not mint location tokens")
        if location_id and location_id not in minted:
            return EventOutcome(False, "HighLevel refused a token for this location")
        return EventOutcome(True, f"minted {len(minted)} location token(s) from the agency token")
    async with resources.sessions.begin() as session:
        await installations.add_audit(
            session,
            "install_event",
            location_id=location_id,
            company_id=company_id,
            detail={"note": "waiting for the OAuth callback"},
        )
    return EventOutcome(True, "recorded; tokens arrive with the OAuth callback")


async def _on_uninstall(resources: Resources, event: AppEvent) -> EventOutcome:
    async with resources.sessions.begin() as session:
        if event.locationId:
            changed = await installations.uninstall_location(session, event.locationId)
            removed = await repo.delete_location_settings(session, [event.locationId])
            scope: dict[str, Any] = {"location_id": event.locationId}
        elif event.companyId:
            company_locations = [
                info.location_id
                for info in await installations.list_installations(session)
                if info.company_id == event.companyId and info.location_id
            ]
            changed = await installations.uninstall_company(session, event.companyId)
            removed = await repo.delete_location_settings(session, company_locations)
            scope = {"company_id": event.companyId}
        else:
            return EventOutcome(False, "UNINSTALL without locationId or companyId; ignored")
        await installations.add_audit(
            session,
            "uninstall",
            location_id=event.locationId,
            company_id=event.companyId,
            detail={"installations": changed, "settings_removed": removed},
        )
    log.info("uninstalled", **scope, installations=changed)
    return EventOutcome(True, f"uninstalled ({changed} installation(s))")
