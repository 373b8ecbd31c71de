"""Standing per-account jobs (reply polling, opt-out list sync): one singleton job per account
whose gateway can do the work, which reschedules itself after each run and ends with its account."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.gateways.base import Capabilities
from castbridge.gateways.registry import SPECS, spec
from castbridge.outbound.runtime import Runtime
from castbridge.store import accounts as account_store
from castbridge.store import jobs
from castbridge.store.jobs import ClaimedJob, NewJob
from castbridge.store.models import GatewayAccount

Capable = Callable[[Capabilities], bool]


def account_job(kind: str, account_id: int, run_at: datetime | None = None) -> NewJob:
    return NewJob(
        kind=kind,
        lane="inbound",
        run_at=run_at or datetime.now(UTC),
        account_id=account_id,
        singleton_key=f"{kind}:{account_id}",
        payload={"account_id": account_id},
    )


async def ensure(session: AsyncSession, kind: str, capable: Capable) -> int:
    """One standing job of `kind` per live account of a capable gateway (a singleton: already
    there, not added); how many were added."""
    gateways = [name for name, gateway in SPECS.items() if capable(gateway.capabilities)]
    added = 0
    for account in await account_store.live_of_gateways(session, gateways):
        if await jobs.enqueue(session, account_job(kind, account.id)) is not None:
            added += 1
    return added


async def due_account(rt: Runtime, job: ClaimedJob, capable: Capable) -> GatewayAccount | None:
    """The job's account when there is still work for it; None ends the standing job (the
    account is gone, retired, keyless, or its gateway no longer offers the work)."""
    async with rt.store.read() as session:
        account = await account_store.get(session, int(job.payload["account_id"]))
    if account is None or account.state == "retired" or not account.api_key_enc:
        return None
    return account if capable(spec(account.gateway).capabilities) else None
