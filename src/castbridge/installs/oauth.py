"""OAuth install: the choose-location redirect with a single-use state, and the callback.

An agency (bulk) install returns a Company token. Its locations are listed (paging by
`count`) and each gets a durable mint job, so a 429 or 5xx while minting one location never
skips it for good (ghl.md §6.4); the callback page says how many are still being connected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from castbridge.ghl.errors import GHLError
from castbridge.ghl.models import TokenResponse
from castbridge.installs.jobs import company_sync_job
from castbridge.installs.minting import queue_company_locations
from castbridge.logging import get_logger
from castbridge.store import events, installations, jobs

if TYPE_CHECKING:
    from castbridge.resources import Resources

log = get_logger(__name__)


class InstallError(Exception):
    """The install could not complete; `str()` is a sentence for the person installing.

    `status` is the HTTP status of the page that says so: 400 for a bad or used link, 503 when
    HighLevel could not be reached and trying again later may work.
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class InstallOutcome:
    user_type: str
    location_ids: list[str]
    company_id: str | None
    pending: int = 0  # locations whose token is still being minted


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
    async with resources.store.write() as session:
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
    """Check `state`, trade `code` for tokens, store them; agency tokens queue location mints.

    Installs started from the HighLevel Marketplace come back without our `state` (ghl.md
    §6.1), so a missing state is allowed unless CASTBRIDGE_OAUTH_REQUIRE_STATE; a state that
    is present must be one we issued, unexpired and unused, consumed atomically. Without a
    valid state no token call is made.
    """
    if state is None and resources.settings.oauth_require_state:
        raise InstallError("This install link is incomplete. Start the install again.")
    if state is not None:
        async with resources.store.write() as session:
            if not await installations.consume_oauth_state(session, state):
                raise InstallError(
                    "This install link has expired or was already used. Start the install again."
                )
    try:
        tokens = await resources.ghl.exchange_code(code, redirect_uri(resources))
    except GHLError as exc:
        log.warning("oauth_exchange_failed", error=str(exc))
        if exc.retryable:
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
    async with resources.store.write() as session:
        info = await installations.upsert_installation(session, resources.box, tokens)
        await events.add_audit(
            session,
            "install",
            location_id=info.location_id,
            company_id=info.company_id,
            detail={"via": "oauth", "user_type": "Location", "missing_scopes": missing},
        )
        await jobs.release_held_for_install(session, info.location_id or "")
    resources.forget_location(info.location_id)
    log.info("installed", location_id=info.location_id, company_id=info.company_id)
    return InstallOutcome("Location", [info.location_id or ""], info.company_id)


def missing_scopes(granted: str, wanted: str) -> list[str]:
    return sorted(set(wanted.split()) - set(granted.split()))


async def _install_company(resources: Resources, tokens: TokenResponse) -> InstallOutcome:
    async with resources.store.write() as session:
        info = await installations.upsert_installation(session, resources.box, tokens)
        await events.add_audit(
            session, "install", company_id=info.company_id, detail={"via": "oauth"}
        )
    company_id = info.company_id or info.resource_id
    try:
        listed = await queue_company_locations(resources.store, resources.ghl, company_id)
        resources.wake("admin")
    except GHLError as exc:
        # The agency is connected; listing its sub-accounts is retried by a durable job.
        log.warning("company_locations_failed", company_id=company_id, error=str(exc))
        async with resources.store.write() as session:
            await jobs.enqueue(session, company_sync_job(company_id))
        return InstallOutcome("Company", [], company_id, pending=-1)
    return InstallOutcome("Company", listed, company_id, pending=len(listed))
