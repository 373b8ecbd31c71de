"""gateway accounts, locations, lanes, encrypted phone numbers, shared buckets, gateway events

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Moves each `location_settings` row with its own key to a location-owned gateway account, pins
nothing retroactively (old messages keep `account_id` NULL and are resolved as before), and
encrypts every stored phone number. It needs castbridge's SecretBox, so it runs through
`castbridge db upgrade` (or any castbridge command), which hands it over.
"""

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def upgrade() -> None:
    box = context.config.attributes.get("secret_box")
    op.create_table(
        "gateway_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gateway", sa.String(length=24), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("owner_location_id", sa.String(length=64), nullable=True),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("api_key_enc", sa.Text(), nullable=False),
        sa.Column("key_fingerprint", sa.String(length=32), nullable=True),
        sa.Column("sender_id", sa.String(length=32), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("region", sa.String(length=2), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_code", sa.String(length=64), nullable=True),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_probe_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("probes", sa.Integer(), nullable=False),
        sa.Column("webhook_token", sa.String(length=64), nullable=False),
        sa.Column("webhooks", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("webhook_token"),
    )
    with op.batch_alter_table("gateway_accounts") as batch:
        batch.create_index("ix_gateway_accounts_owner_location_id", ["owner_location_id"])
        batch.create_index("ix_gateway_accounts_key_fingerprint", ["key_fingerprint"])
    op.create_index(
        "uq_env_account",
        "gateway_accounts",
        ["gateway"],
        unique=True,
        sqlite_where=sa.text("origin = 'env' AND state <> 'retired'"),
        postgresql_where=sa.text("origin = 'env' AND state <> 'retired'"),
    )

    op.create_table(
        "locations",
        sa.Column("location_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("had_own_account", sa.Boolean(), nullable=False),
        sa.Column("sender_id", sa.String(length=32), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("region", sa.String(length=2), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["gateway_accounts.id"]),
        sa.PrimaryKeyConstraint("location_id"),
    )
    op.create_table(
        "keyring",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value_enc", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "gateway_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("event_key", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("body_enc", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["gateway_accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "event_key", name="uq_gateway_event"),
    )
    with op.batch_alter_table("gateway_events") as batch:
        batch.create_index("ix_gateway_events_account_id", ["account_id"])
        batch.create_index("ix_gateway_events_received_at", ["received_at"])

    with op.batch_alter_table("installations") as batch:
        batch.add_column(sa.Column("refresh_lock_owner", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("granted_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE installations SET granted_at = updated_at WHERE access_token_enc IS NOT NULL"
    )

    _move_location_settings(box)

    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("phone_enc", sa.Text(), nullable=True))
        batch.add_column(sa.Column("phone_hash", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("phone_masked", sa.String(length=24), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("e164", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("held", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sender_id", sa.String(length=32), nullable=True))
        batch.add_column(
            sa.Column("maybe_sent", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("ghl_reported_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("force_report", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.alter_column("channel", type_=sa.String(length=16), existing_nullable=True)
        batch.alter_column("gateway", existing_type=sa.String(length=24), nullable=True)
    _encrypt_phones(box)
    sqlite = op.get_bind().dialect.name == "sqlite"
    # 0001 left the unique constraint on ghl_message_id unnamed: PostgreSQL named it itself;
    # on SQLite the batch rebuild names reflected constraints by this convention.
    unique_name = "uq_messages_ghl_message_id" if sqlite else "messages_ghl_message_id_key"
    with op.batch_alter_table(
        "messages", naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"}
    ) as batch:
        batch.alter_column("phone_enc", existing_type=sa.Text(), nullable=False)
        batch.drop_column("phone_raw")
        batch.drop_column("phone_e164")
        batch.drop_constraint(unique_name, type_="unique")
        batch.create_unique_constraint("uq_message_location", ["location_id", "ghl_message_id"])
        batch.create_index("ix_messages_ghl_message_id", ["ghl_message_id"])
        batch.create_index("ix_messages_phone_hash", ["phone_hash"])
        batch.create_index("ix_messages_account_id", ["account_id"])
        batch.create_index("ix_messages_gateway_message_id", ["gateway_message_id"])
        batch.create_foreign_key(
            "fk_messages_account_id", "gateway_accounts", ["account_id"], ["id"]
        )

    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("lane", sa.String(length=16), nullable=False, server_default="send")
        )
        batch.add_column(sa.Column("location_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("singleton_key", sa.String(length=128), nullable=True))
        batch.alter_column("message_id", existing_type=sa.Integer(), nullable=True)
        batch.drop_index("ix_jobs_due")
        batch.create_index("ix_jobs_lane_due", ["lane", "state", "run_at"])
        batch.create_index("ix_jobs_lease", ["state", "lease_until"])
        batch.create_index("ix_jobs_account_id", ["account_id"])
    op.execute("UPDATE jobs SET lane = 'status' WHERE kind = 'poll'")
    op.execute("UPDATE jobs SET lane = 'report' WHERE kind = 'report'")
    op.execute(
        "UPDATE jobs SET location_id = "
        "(SELECT location_id FROM messages WHERE messages.id = jobs.message_id)"
    )
    op.create_index(
        "uq_jobs_singleton",
        "jobs",
        ["singleton_key"],
        unique=True,
        sqlite_where=sa.text("state IN ('queued', 'running')"),
        postgresql_where=sa.text("state IN ('queued', 'running')"),
    )
    with op.batch_alter_table("attempts") as batch:
        batch.alter_column("outcome", type_=sa.String(length=32), existing_nullable=False)


def _move_location_settings(box: object) -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT location_id, gateway, api_key_enc, sender_id, channel, region, updated_at "
            "FROM location_settings"
        )
    ).all()
    now = _now()
    for row in rows:
        account_id = None
        if row.api_key_enc:
            result = bind.execute(
                sa.text(
                    "INSERT INTO gateway_accounts (gateway, origin, owner_location_id, label, "
                    "api_key_enc, sender_id, channel, region, settings, state, probes, "
                    "webhook_token, webhooks, version, created_at, updated_at) VALUES "
                    "(:gateway, 'location', :loc, :label, :key, :sender, :channel, :region, "
                    "'{}', 'active', 0, :token, '{}', 1, :now, :now) RETURNING id"
                ),
                {
                    "gateway": row.gateway or "cast",
                    "loc": row.location_id,
                    "label": f"{row.location_id} (own key)",
                    "key": row.api_key_enc,
                    "sender": row.sender_id,
                    "channel": row.channel or "sms",
                    "region": row.region,
                    "token": secrets.token_urlsafe(32),
                    "now": now,
                },
            )
            account_id = result.scalar_one()
        bind.execute(
            sa.text(
                "INSERT INTO locations (location_id, account_id, had_own_account, sender_id, "
                "channel, region, version, updated_at) VALUES (:loc, :account, :own, :sender, "
                ":channel, :region, 1, :now)"
            ),
            {
                "loc": row.location_id,
                "account": account_id,
                "own": account_id is not None,
                "sender": None if account_id else row.sender_id,
                "channel": None if account_id else row.channel,
                "region": row.region,
                "now": now,
            },
        )
    op.drop_table("location_settings")


def _encrypt_phones(box: object) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, phone_raw, phone_e164 FROM messages")).all()
    if not rows:
        return
    if box is None:
        raise RuntimeError(
            "this migration encrypts stored phone numbers: run it with `castbridge db upgrade`"
        )
    from castbridge.logging import mask_phone
    from castbridge.store.keyring import INDEX_KEY_NAME, new_index_key

    index_key = new_index_key()
    bind.execute(
        sa.text("INSERT INTO keyring (name, value_enc, created_at) VALUES (:n, :v, :now)"),
        {"n": INDEX_KEY_NAME, "v": box.encrypt(index_key.hex()), "now": _now()},  # type: ignore[attr-defined]
    )
    for row in rows:
        value = row.phone_e164 or row.phone_raw
        bind.execute(
            sa.text(
                "UPDATE messages SET phone_enc = :enc, phone_hash = :hash, phone_masked = :masked, "
                "e164 = :e164 WHERE id = :id"
            ),
            {
                "id": row.id,
                "enc": box.encrypt(value),  # type: ignore[attr-defined]
                "hash": hmac.new(index_key, row.phone_e164.encode(), hashlib.sha256).hexdigest()
                if row.phone_e164
                else None,
                "masked": mask_phone(value)[:24],
                "e164": row.phone_e164 is not None,
            },
        )


def downgrade() -> None:
    raise RuntimeError("0002 encrypts phone numbers and cannot be downgraded; restore a backup")
