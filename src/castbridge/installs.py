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

if TYPE_CHECKING:
    from castbridge.resources import Resources
    from castbridge.web.webhooks import AppEvent

log = get_logger(__name__)


class InstallError(Exception):
    """The install could not complete; `str()` is a sentence for the person installing."""


@dataclass(frozen=True, slots=True)
class InstallOutcome:
    user_type: str
    location_ids: list[str]
    company_id: str | None


@dataclass(frozen=True, slots=True)
class EventOutcome:
    handled: bool
    detail: str | None = None


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
    minted = await mint_company_locations(resources, company_id, only=None)
    return InstallOutcome("Company", minted, company_id)


async def mint_company_locations(
    resources: Resources, company_id: str, *, only: list[str] | None
) -> list[str]:
    """Mint and store a Location token for each installed location (or just `only`)."""
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
        minted = await mint_company_locations(
            resources, company_id, only=[location_id] if location_id else None
        )
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
