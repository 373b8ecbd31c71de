"""Repository functions for installations, OAuth states, seen webhooks and audit (real SQLite)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from castbridge.ghl.auth import GrantKey
from castbridge.ghl.models import LocationTokenResponse, TokenResponse
from castbridge.secrets import SecretBox
from castbridge.store import events, installations
from castbridge.store.db import create_sessionmaker
from castbridge.store.models import Installation
from tests.conftest import TEST_FERNET_KEY

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ghl"


def load(name: str) -> dict[str, object]:
    data = json.loads((FIXTURES / name).read_text())
    assert isinstance(data, dict)
    return data


LOCATION = TokenResponse.model_validate(load("token_location.json"))
COMPANY = TokenResponse.model_validate(load("token_company.json"))
MINTED = LocationTokenResponse.model_validate(load("location_token.json"))


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


async def upsert(
    sessions: async_sessionmaker[AsyncSession],
    box: SecretBox,
    tokens: TokenResponse | LocationTokenResponse,
    **kwargs: object,
) -> installations.InstallationInfo:
    async with sessions.begin() as session:
        return await installations.upsert_installation(session, box, tokens, **kwargs)  # type: ignore[arg-type]


async def test_upsert_inserts_then_updates_one_row(
    sessions: async_sessionmaker[AsyncSession], secret_box: SecretBox
) -> None:
    """A reinstall updates the same row, bumps token_version and reactivates it."""
    first = await upsert(sessions, secret_box, LOCATION)
    assert (first.user_type, first.resource_id) == ("Location", LOCATION.location_id)
    assert first.company_id == LOCATION.company_id
    assert first.token_version == 1
    assert first.state == "active"
    async with sessions.begin() as session:
        await installations.set_installation_state(session, first.id, "needs_reinstall")
    second = await upsert(sessions, secret_box, LOCATION.model_copy(update={"scope": "x y"}))
    assert second.id == first.id
    assert second.token_version == 2
    assert second.state == "active"
    assert second.scope == "x y"


async def test_tokens_are_stored_encrypted(
    sessions: async_sessionmaker[AsyncSession], secret_box: SecretBox
) -> None:
    """The row holds ciphertext that decrypts to the tokens; InstallationInfo holds none."""
    info = await upsert(sessions, secret_box, LOCATION)
    async with sessions() as session:
        row = await session.get(Installation, info.id)
    assert row is not None
    assert row.access_token_enc is not None
    assert row.refresh_token_enc is not None
    assert LOCATION.access_token not in row.access_token_enc
    assert secret_box.decrypt(row.access_token_enc) == LOCATION.access_token
    assert secret_box.decrypt(row.refresh_token_enc) == LOCATION.refresh_token
    assert LOCATION.access_token not in repr(info)


async def test_company_and_minted_location_rows(
    sessions: async_sessionmaker[AsyncSession], secret_box: SecretBox
) -> None:
    """A Company token and a location token minted from it are two rows linked by company_id."""
    company = await upsert(sessions, secret_box, COMPANY)
    assert (company.user_type, company.resource_id, company.location_id) == (
        "Company",
        COMPANY.company_id,
        None,
    )
    minted = await upsert(sessions, secret_box, MINTED, company_id=COMPANY.company_id)
    assert minted.user_type == "Location"
    assert minted.company_id == COMPANY.company_id
    assert not minted.has_refresh_token
    async with sessions() as session:
        rows = await installations.list_installations(session)
        by_company = await installations.get_company_installation(session, COMPANY.company_id or "")
        by_location = await installations.get_installation(session, MINTED.location_id)
    assert [row.user_type for row in rows] == ["Company", "Location"]
    assert by_company is not None
    assert by_company.id == company.id
    assert by_location is not None
    assert by_location.id == minted.id


async def test_upsert_needs_a_resource_id(
    sessions: async_sessionmaker[AsyncSession], secret_box: SecretBox
) -> None:
    """A Company token without companyId cannot be stored."""
    broken = COMPANY.model_copy(update={"company_id": None})
    with pytest.raises(ValueError, match="company id"):
        await upsert(sessions, secret_box, broken)


async def test_concurrent_upserts_converge(engine: AsyncEngine, secret_box: SecretBox) -> None:
    """The OAuth callback and the INSTALL path storing at once end in one row, not an error."""
    sessions = create_sessionmaker(engine)
    results = await asyncio.gather(*(upsert(sessions, secret_box, LOCATION) for _ in range(5)))
    assert len({info.id for info in results}) == 1
    async with sessions() as session:
        info = await installations.get_installation(session, LOCATION.location_id or "")
    assert info is not None
    assert info.token_version == 5


async def test_uninstall_location_nulls_tokens_and_keeps_row(
    sessions: async_sessionmaker[AsyncSession], secret_box: SecretBox
) -> None:
    """UNINSTALL for a location crypto-shreds its tokens, keeps the row as uninstalled."""
    info = await upsert(sessions, secret_box, LOCATION)
    async with sessions.begin() as session:
        assert await installations.uninstall_location(session, LOCATION.location_id or "") == 1
    async with sessions() as session:
        after = await installations.get_installation(session, LOCATION.location_id or "")
    assert after is not None
    assert after.id == info.id
    assert after.state == "uninstalled"
    assert not after.has_access_token
    assert not after.has_refresh_token
    assert after.token_version == info.token_version + 1


async def test_uninstall_company_disables_its_locations(
    sessions: async_sessionmaker[AsyncSession], secret_box: SecretBox
) -> None:
    """UNINSTALL for an agency drops the Company token and its locations' tokens only."""
    await upsert(sessions, secret_box, COMPANY)
    await upsert(sessions, secret_box, MINTED, company_id=COMPANY.company_id)
    other = LOCATION.model_copy(update={"location_id": "otherLocation0000001", "company_id": "x"})
    await upsert(sessions, secret_box, other)
    async with sessions.begin() as session:
        assert await installations.uninstall_company(session, COMPANY.company_id or "") == 2
    async with sessions() as session:
        rows = {row.resource_id: row for row in await installations.list_installations(session)}
    assert rows[COMPANY.company_id or ""].state == "uninstalled"
    assert rows[MINTED.location_id].state == "uninstalled"
    assert rows["otherLocation0000001"].state == "active"


async def test_set_state_rejects_unknown_states(
    sessions: async_sessionmaker[AsyncSession], secret_box: SecretBox
) -> None:
    """Only active, paused, needs_reinstall and uninstalled are states."""
    info = await upsert(sessions, secret_box, LOCATION)
    async with sessions.begin() as session:
        with pytest.raises(ValueError, match="state"):
            await installations.set_installation_state(session, info.id, "deleted")


async def test_rotate_installation_secrets(
    sessions: async_sessionmaker[AsyncSession], secret_box: SecretBox
) -> None:
    """Rotation re-encrypts every token under the new primary key; the old key can then go."""
    await upsert(sessions, secret_box, LOCATION)
    await upsert(sessions, secret_box, MINTED, company_id="c1")  # no refresh token
    new_key = Fernet.generate_key().decode()
    rotating = SecretBox([new_key, TEST_FERNET_KEY])
    async with sessions.begin() as session:
        assert await installations.rotate_installation_secrets(session, rotating) == 2
    only_new = SecretBox([new_key])
    store = installations.StoreTokenStore(sessions, only_new)
    grant = await store.load_grant(GrantKey.location(LOCATION.location_id or ""))
    assert grant is not None
    assert grant.access_token == LOCATION.access_token
    assert grant.refresh_token == LOCATION.refresh_token


# --- OAuth state --------------------------------------------------------------------------


async def test_oauth_state_is_single_use(sessions: async_sessionmaker[AsyncSession]) -> None:
    """A state is consumed once; the second consume and unknown states are False."""
    async with sessions.begin() as session:
        state = await installations.create_oauth_state(session, 600)
    assert len(state) >= 32
    async with sessions.begin() as session:
        assert await installations.consume_oauth_state(session, state) is True
    async with sessions.begin() as session:
        assert await installations.consume_oauth_state(session, state) is False
        assert await installations.consume_oauth_state(session, "never-issued") is False
        assert await installations.consume_oauth_state(session, "") is False
        assert await installations.consume_oauth_state(session, "x" * 500) is False


async def test_oauth_state_expires(sessions: async_sessionmaker[AsyncSession]) -> None:
    """An expired state cannot be consumed, and pruning removes it."""
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        state = await installations.create_oauth_state(session, timedelta(minutes=10), now=now)
    later = now + timedelta(minutes=10, seconds=1)
    async with sessions.begin() as session:
        assert await installations.consume_oauth_state(session, state, now=later) is False
        assert await installations.prune_expired_oauth_states(session, now=later) == 1
    async with sessions.begin() as session:
        assert await installations.consume_oauth_state(session, state, now=now) is False


async def test_oauth_state_concurrent_consumers_one_wins(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Ten concurrent callbacks with the same state: exactly one wins (DELETE ... RETURNING)."""
    async with sessions.begin() as session:
        state = await installations.create_oauth_state(session, 600)

    async def consume() -> bool:
        async with sessions.begin() as session:
            return await installations.consume_oauth_state(session, state)

    results = await asyncio.gather(*(consume() for _ in range(10)))
    assert results.count(True) == 1


# --- seen webhooks and audit --------------------------------------------------------------


async def test_remember_webhook_detects_replays(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The first webhookId is new, the same id again is a replay."""
    async with sessions.begin() as session:
        assert await events.remember_webhook(session, "wh_1", "INSTALL") is True
    async with sessions.begin() as session:
        assert await events.remember_webhook(session, "wh_1", "INSTALL") is False
        assert await events.remember_webhook(session, "wh_2", "UNINSTALL") is True


async def test_prune_seen_webhooks_after_seven_days(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Ids older than 7 days are pruned, recent ones kept."""
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        await events.remember_webhook(session, "old", "x", now=now - timedelta(days=8))
        await events.remember_webhook(session, "new", "x", now=now - timedelta(days=1))
    async with sessions.begin() as session:
        assert await events.prune_seen_webhooks(session, now=now) == 1
        assert await events.remember_webhook(session, "new", "x") is False
        assert await events.remember_webhook(session, "old", "x") is True


async def test_audit_rows(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Audit rows are kept with their detail and listed newest first."""
    async with sessions.begin() as session:
        await events.add_audit(session, "install", location_id="L1", detail={"by": "x"})
        await events.add_audit(session, "uninstall", location_id="L1", company_id="C1")
        await events.add_audit(session, "install", location_id="L2")
    async with sessions() as session:
        rows = await events.list_audit(session, location_id="L1")
    assert [row.action for row in rows] == ["uninstall", "install"]
    assert rows[1].detail == {"by": "x"}


# --- the token store ----------------------------------------------------------------------


async def test_lease_is_conditional(
    sessions: async_sessionmaker[AsyncSession], secret_box: SecretBox
) -> None:
    """One lease at a time, only at the current token_version, re-takeable once expired."""
    info = await upsert(sessions, secret_box, LOCATION)
    store = installations.StoreTokenStore(sessions, secret_box)
    now = datetime.now(UTC)
    soon = now + timedelta(seconds=30)
    assert await store.try_lease(info.id, info.token_version, soon, now, "a") is True
    assert await store.try_lease(info.id, info.token_version, soon, now, "b") is False
    assert await store.try_lease(info.id, info.token_version + 1, soon, now, "b") is False
    after_expiry = soon + timedelta(seconds=1)
    assert await store.try_lease(info.id, info.token_version, soon, after_expiry, "b") is True
    await store.release_lease(info.id, "a")  # no longer a's lease: nothing happens
    assert await store.try_lease(info.id, info.token_version, soon, now, "c") is False
    await store.release_lease(info.id, "b")
    assert await store.try_lease(info.id, info.token_version, soon, now, "c") is True


async def test_save_refreshed_is_compare_and_swap(
    sessions: async_sessionmaker[AsyncSession], secret_box: SecretBox
) -> None:
    """Saving a refreshed pair bumps the version once; a stale version saves nothing."""
    info = await upsert(sessions, secret_box, LOCATION)
    store = installations.StoreTokenStore(sessions, secret_box)
    fresh = LOCATION.model_copy(update={"access_token": "new-at", "refresh_token": "new-rt"})
    now = datetime.now(UTC)
    assert await store.try_lease(
        info.id, info.token_version, now + timedelta(seconds=30), now, "me"
    )
    saved = await store.save_refreshed(info.id, info.token_version, fresh, now)
    assert saved is not None
    assert saved.token_version == info.token_version + 1
    assert saved.access_token == "new-at"
    assert saved.refresh_token == "new-rt"
    assert await store.save_refreshed(info.id, info.token_version, LOCATION, now) is None
    grant = await store.load_grant(GrantKey.location(LOCATION.location_id or ""))
    assert grant is not None
    assert grant.access_token == "new-at"
    # The lease was cleared by the save.
    assert await store.try_lease(
        info.id, saved.token_version, now + timedelta(seconds=1), now, "me"
    )


async def test_mark_paused_and_needs_reinstall(
    sessions: async_sessionmaker[AsyncSession], secret_box: SecretBox
) -> None:
    """Pausing keeps tokens and records retry_after; needs_reinstall is a compare-and-swap."""
    info = await upsert(sessions, secret_box, LOCATION)
    store = installations.StoreTokenStore(sessions, secret_box)
    until = datetime.now(UTC) + timedelta(hours=1)
    await store.mark_paused(info.id, info.token_version, "Location is not active", until)
    async with sessions() as session:
        paused = await installations.get_installation(session, LOCATION.location_id or "")
    assert paused is not None
    assert paused.state == "paused"
    assert paused.retry_after == until
    assert paused.has_refresh_token
    await store.mark_needs_reinstall(info.id, info.token_version + 1, "stale: ignored")
    async with sessions() as session:
        unchanged = await installations.get_installation(session, LOCATION.location_id or "")
    assert unchanged is not None
    assert unchanged.state == "paused"  # a stale version changes nothing
    await store.mark_needs_reinstall(info.id, info.token_version, "invalid_grant for +639171234567")
    async with sessions() as session:
        row = (
            await session.execute(select(Installation).where(Installation.id == info.id))
        ).scalar_one()
    assert row.state == "needs_reinstall"
    assert row.state_reason is not None
    assert "639171234567" not in row.state_reason  # reasons are scrubbed
