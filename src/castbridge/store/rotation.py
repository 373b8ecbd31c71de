"""Re-encrypting every stored secret under the first key of CASTBRIDGE_SECRET_KEYS."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.secrets import SecretBox
from castbridge.store import accounts, keyring
from castbridge.store.installations import rotate_installation_secrets
from castbridge.store.models import GatewayEvent, Message

BATCH = 500


async def _rotate_column(session: AsyncSession, model: type, column: str, box: SecretBox) -> int:
    """Re-encrypt one text column of every row, a batch at a time (messages can be many)."""
    count = 0
    last_id = 0
    column_attr = getattr(model, column)
    while True:
        rows = (
            await session.execute(
                select(model.id, column_attr)  # type: ignore[attr-defined]
                .where(model.id > last_id, column_attr != "")  # type: ignore[attr-defined]
                .order_by(model.id)  # type: ignore[attr-defined]
                .limit(BATCH)
            )
        ).all()
        if not rows:
            return count
        for row_id, value in rows:
            await session.execute(
                update(model)
                .where(model.id == row_id)  # type: ignore[attr-defined]
                .values({column: box.rotate(value)})
                .execution_options(synchronize_session=False)
            )
            count += 1
            last_id = row_id


async def rotate_all(session: AsyncSession, box: SecretBox) -> int:
    """Every token, gateway key, phone number, stored webhook body and castbridge's own keys;
    the caller commits (or rolls back for a dry run). Returns how many secrets there are."""
    count = await rotate_installation_secrets(session, box)
    count += await accounts.rotate_secrets(session, box.rotate)
    count += await keyring.rotate(session, box)
    count += await _rotate_column(session, Message, "phone_enc", box)
    count += await _rotate_column(session, GatewayEvent, "body_enc", box)
    return count
