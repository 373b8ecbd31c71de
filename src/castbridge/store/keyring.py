"""Keys castbridge makes for itself, stored encrypted under CASTBRIDGE_SECRET_KEYS.

The blind-index key turns a phone number into a keyed hash (HMAC-SHA256), so messages, opt-outs
and reply routing can be matched by number while the number itself is stored only encrypted.
It must outlive key rotation (a new hash would orphan every stored one), so it is a key of its
own, generated once and re-encrypted by `castbridge secrets rotate`.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.secrets import SecretBox
from castbridge.store import dialect
from castbridge.store.models import KeyringEntry

INDEX_KEY_NAME = "phone_index"


def new_index_key() -> bytes:
    return os.urandom(32)


async def index_key(session: AsyncSession, box: SecretBox) -> bytes:
    """The blind-index key, created on first use (concurrent first uses agree on one)."""
    return await named_key(session, box, INDEX_KEY_NAME)


async def named_key(session: AsyncSession, box: SecretBox, name: str) -> bytes:
    """A 32-byte key of castbridge's own, created on first use; every process agrees on it
    (the settings page's session key, so any web process can check a session)."""
    stored = await session.scalar(select(KeyringEntry.value_enc).where(KeyringEntry.name == name))
    if stored is None:
        await session.execute(
            dialect.insert(session, KeyringEntry)
            .values(
                name=name,
                value_enc=box.encrypt(new_index_key().hex()),
                created_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing(index_elements=["name"])
        )
        stored = await session.scalar(
            select(KeyringEntry.value_enc).where(KeyringEntry.name == name)
        )
    assert stored is not None
    return bytes.fromhex(box.decrypt(stored))


async def rotate(session: AsyncSession, box: SecretBox) -> int:
    rows = (await session.execute(select(KeyringEntry))).scalars().all()
    for row in rows:
        await session.execute(
            update(KeyringEntry)
            .where(KeyringEntry.name == row.name)
            .values(value_enc=box.rotate(row.value_enc))
        )
    return len(rows)
