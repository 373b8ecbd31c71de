"""Token lifecycle: single-flight refresh in and across processes, reinstall and pause states."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from castbridge.config import Settings
from castbridge.ghl import errors
from castbridge.ghl.auth import GrantKey, TokenProvider
from castbridge.store import installations
from castbridge.store.db import create_engine, create_sessionmaker
from tests.ghl.conftest import EXPIRED, REDIRECT_URI, GHLStack, StackStarter

PHONE = "+639171234567"


async def test_fifty_concurrent_calls_at_an_expired_token_refresh_once(
    start_stack: StackStarter,
) -> None:
    """50 concurrent calls find the stored token expired: exactly ONE refresh reaches HighLevel."""
    ghl = await start_stack(token_latency=0.1)
    await ghl.install(expires_in=EXPIRED)
    results = await asyncio.gather(
        *(ghl.client.find_contact_by_phone(ghl.location_id, PHONE) for _ in range(50))
    )
    assert results == [None] * 50
    assert ghl.sandbox.refresh_count(ghl.location_id) == 1
    assert ghl.sandbox.refresh_count() == 1
    info = await ghl.grant()
    assert info.token_version == 2
    assert info.expires_at is not None
    assert info.expires_at > datetime.now(UTC) + timedelta(hours=1)


async def test_fifty_concurrent_401s_refresh_once(start_stack: StackStarter) -> None:
    """50 in-flight calls all get 401 for a revoked token: one refresh, each resends once."""
    ghl = await start_stack(token_latency=0.1)
    await ghl.install()
    ghl.sandbox.revoke_access_tokens(ghl.location_id)
    ids = [ghl.sandbox.delivery_payload(phone=PHONE, message="x")["messageId"] for _ in range(50)]
    await asyncio.gather(
        *(ghl.client.update_message_status(ghl.location_id, i, "delivered") for i in ids)
    )
    assert ghl.sandbox.refresh_count(ghl.location_id) == 1
    assert all(ghl.sandbox.statuses(i) == ["delivered"] for i in ids)
    assert (await ghl.grant()).token_version == 2


class CountingStore(installations.StoreTokenStore):
    """The real store, counting lease attempts that lost (to see the race really happened)."""

    lost_leases = 0

    async def try_lease(
        self, grant_id: int, token_version: int, until: datetime, now: datetime, owner: str
    ) -> bool:
        won = await super().try_lease(grant_id, token_version, until, now, owner)
        if not won:
            self.lost_leases += 1
        return won


async def test_two_processes_on_one_database_refresh_once(
    start_stack: StackStarter, settings: Settings
) -> None:
    """Two token providers on separate engines (separate locks) race; still ONE refresh."""
    ghl = await start_stack(token_latency=0.2)
    await ghl.install(expires_in=EXPIRED)
    engines = [create_engine(ghl.database_url) for _ in range(2)]
    try:
        stores = [CountingStore(create_sessionmaker(engine), ghl.box) for engine in engines]
        clients = [ghl.make_client(TokenProvider(store, poll_interval=0.02)) for store in stores]
        await asyncio.gather(
            *(
                client.find_contact_by_phone(ghl.location_id, PHONE)
                for client in clients
                for _ in range(25)
            )
        )
    finally:
        for engine in engines:
            await engine.dispose()
    assert ghl.sandbox.refresh_count(ghl.location_id) == 1
    assert sum(store.lost_leases for store in stores) >= 1  # one process waited for the other
    assert (await ghl.grant()).token_version == 2


async def test_crashed_lease_holder_is_taken_over(ghl: GHLStack) -> None:
    """A lease left by a crashed process blocks refresh only until it lapses; then one refresh."""
    await ghl.install(expires_in=EXPIRED)
    info = await ghl.grant()
    now = datetime.now(UTC)
    assert await ghl.store.try_lease(
        info.id, info.token_version, now + timedelta(seconds=0.4), now, "crashed-process"
    )
    started = time.monotonic()
    await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    assert time.monotonic() - started >= 0.3
    assert ghl.sandbox.refresh_count(ghl.location_id) == 1


async def test_new_pair_is_persisted_before_use(ghl: GHLStack) -> None:
    """After a refresh the stored pair is the live one; the old refresh token is dead upstream."""
    first = await ghl.install(expires_in=EXPIRED)
    await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    grant = await ghl.store.load_grant(ghl.key())
    assert grant is not None
    assert grant.refresh_token != first.refresh_token
    assert grant.refresh_token in ghl.sandbox.refresh_tokens
    assert first.refresh_token in ghl.sandbox.used_refresh_tokens
    assert grant.access_token is not None
    assert ghl.sandbox.grant_for(grant.access_token) is not None


@pytest.mark.parametrize(("minutes_left", "refreshes"), [(4, 1), (10, 0)])
async def test_refresh_ahead_of_expiry(ghl: GHLStack, minutes_left: int, refreshes: int) -> None:
    """A token within 5 minutes of expiry is refreshed before use; one with 10 minutes is not."""
    await ghl.install(expires_in=minutes_left * 60)
    await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    assert ghl.sandbox.refresh_count(ghl.location_id) == refreshes


async def test_refused_refresh_marks_needs_reinstall_and_stops(ghl: GHLStack) -> None:
    """invalid_grant on refresh: state needs_reinstall, and later calls never try again."""
    await ghl.install(expires_in=EXPIRED)
    ghl.sandbox.revoke_refresh_tokens(ghl.location_id)
    with pytest.raises(errors.NeedsReinstallError):
        await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    info = await ghl.grant()
    assert info.state == "needs_reinstall"
    assert info.state_reason is not None
    assert "invalid" in info.state_reason.lower()
    for _ in range(3):
        with pytest.raises(errors.NeedsReinstallError):
            await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    assert ghl.sandbox.refresh_count() == 1
    # A reinstall brings the location back.
    await ghl.install()
    assert (await ghl.grant()).state == "active"
    assert await ghl.client.find_contact_by_phone(ghl.location_id, PHONE) is None


async def test_location_not_active_pauses_and_retries_later(ghl: GHLStack) -> None:
    """'Location is not active' pauses the location (tokens kept); after retry_after it recovers."""
    await ghl.install(expires_in=EXPIRED)
    ghl.sandbox.set_location_active(ghl.location_id, False)
    with pytest.raises(errors.LocationInactiveError) as caught:
        await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    assert caught.value.retryable
    assert caught.value.retry_after == pytest.approx(3600.0)
    info = await ghl.grant()
    assert info.state == "paused"
    assert info.retry_after is not None
    assert info.retry_after > datetime.now(UTC)
    assert info.has_refresh_token  # paused is not uninstalled
    with pytest.raises(errors.LocationInactiveError):
        await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    assert ghl.sandbox.refresh_count(ghl.location_id) == 1  # no retry while paused

    # An hour later the location is active again: the next call refreshes and un-pauses.
    ghl.sandbox.set_location_active(ghl.location_id, True)
    later = TokenProvider(
        ghl.store, clock=lambda: datetime.now(UTC) + timedelta(hours=1, seconds=1)
    )
    await ghl.make_client(later).find_contact_by_phone(ghl.location_id, PHONE)
    assert ghl.sandbox.refresh_count(ghl.location_id) == 2
    assert (await ghl.grant()).state == "active"


async def test_minted_location_token_without_refresh_token_is_reminted(
    start_stack: StackStarter,
) -> None:
    """A location token minted without a refresh token is re-minted from the Company token."""
    ghl = await start_stack(location_token_refresh=False)
    company_id = ghl.sandbox.config.company_id
    code = ghl.sandbox.issue_code(redirect_uri=REDIRECT_URI, user_type="Company")
    company = await ghl.client.exchange_code(code, REDIRECT_URI, user_type="Company")
    await ghl.save(company)
    minted = await ghl.client.location_token(company.access_token, company_id, ghl.location_id)
    assert minted.refresh_token is None
    await ghl.save(minted, company_id=company_id, expires_in=EXPIRED)

    await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    assert ghl.sandbox.refresh_count() == 0  # minted again, not refreshed
    info = await ghl.grant()
    assert info.token_version == 2
    assert info.company_id == company_id


async def test_uninstalled_location_raises_not_installed(ghl: GHLStack) -> None:
    """After UNINSTALL the provider refuses the location without calling HighLevel."""
    await ghl.install()
    async with ghl.sessions.begin() as session:
        assert await installations.uninstall_location(session, ghl.location_id) == 1
    with pytest.raises(errors.NotInstalledError):
        await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)
    assert sum(ghl.sandbox.requests.values()) == 0


async def test_company_token_is_refreshed_like_a_location_token(ghl: GHLStack) -> None:
    """The provider refreshes an expired Company token once, with user_type Company."""
    code = ghl.sandbox.issue_code(redirect_uri=REDIRECT_URI, user_type="Company")
    company = await ghl.client.exchange_code(code, REDIRECT_URI)
    await ghl.save(company, expires_in=EXPIRED)
    key = GrantKey.company(ghl.sandbox.config.company_id)
    tokens = await asyncio.gather(*(ghl.provider.token(key, ghl.client) for _ in range(10)))
    assert len({token.value for token in tokens}) == 1
    assert ghl.sandbox.refresh_count(ghl.sandbox.config.company_id) == 1


async def test_tokens_are_never_plaintext_in_the_database(
    ghl: GHLStack, engine: AsyncEngine, settings: Settings
) -> None:
    """The SQLite file (and its WAL), or every row on PostgreSQL, never contains an access or
    refresh token in the clear."""
    first = await ghl.install(expires_in=EXPIRED)
    await ghl.client.find_contact_by_phone(ghl.location_id, PHONE)  # refresh: a second pair
    grant = await ghl.store.load_grant(ghl.key())
    assert grant is not None
    secrets = [first.access_token, first.refresh_token, grant.access_token, grant.refresh_token]
    if engine.dialect.name == "postgresql":
        from sqlalchemy import text

        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT i::text FROM installations i"))).all()
        dump = "".join(row[0] for row in rows).encode()
        assert dump
        for secret in secrets:
            assert secret
            assert secret.encode() not in dump
        return
    database = Path(settings.effective_database_url.split("///", 1)[1])
    files = [path for path in database.parent.glob(database.name + "*") if path.is_file()]
    assert database in files
    content = b"".join(path.read_bytes() for path in files)
    for secret in secrets:
        assert secret
        assert secret.encode() not in content
