"""The durable jobs of an install: minting one location's token, listing an agency's locations."""

from __future__ import annotations

from datetime import UTC, datetime

from castbridge.store.jobs import NewJob


def mint_job(location_id: str, company_id: str | None = None) -> NewJob:
    return NewJob(
        kind="mint",
        lane="admin",
        run_at=datetime.now(UTC),
        location_id=location_id,
        payload={"company_id": company_id} if company_id else {},
        singleton_key=f"mint:{location_id}",
    )


def company_sync_job(company_id: str) -> NewJob:
    return NewJob(
        kind="company_sync",
        lane="admin",
        run_at=datetime.now(UTC),
        payload={"company_id": company_id},
        singleton_key=f"company:{company_id}",
    )
