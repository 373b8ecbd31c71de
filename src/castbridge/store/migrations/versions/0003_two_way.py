"""two-way messaging: inbound events, opt-outs, contact links, reply-polling cursors

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Additive only (new tables, nullable columns), so processes of the previous release keep
working against the upgraded schema while a release rolls.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_accounts") as batch:
        batch.add_column(sa.Column("inbound_cursor", sa.Text(), nullable=True))
        batch.add_column(sa.Column("inbound_polled_at", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "inbound_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("gateway", sa.String(length=24), nullable=False),
        sa.Column("key_scope", sa.String(length=64), nullable=False),
        sa.Column("dedupe_key", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("gateway_message_id", sa.String(length=64), nullable=True),
        sa.Column("phone_enc", sa.Text(), nullable=False),
        sa.Column("phone_hash", sa.String(length=64), nullable=True),
        sa.Column("phone_masked", sa.String(length=24), nullable=False),
        sa.Column("e164", sa.Boolean(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gateway_event_id", sa.Integer(), nullable=True),
        sa.Column("location_id", sa.String(length=64), nullable=True),
        sa.Column("route", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("keyword", sa.String(length=32), nullable=True),
        sa.Column("ghl_contact_id", sa.String(length=64), nullable=True),
        sa.Column("ghl_conversation_id", sa.String(length=64), nullable=True),
        sa.Column("ghl_message_id", sa.String(length=64), nullable=True),
        sa.Column("post_attempted", sa.Boolean(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["gateway_accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_scope", "dedupe_key", name="uq_inbound_event"),
    )
    with op.batch_alter_table("inbound_events") as batch:
        batch.create_index("ix_inbound_events_account_id", ["account_id"])
        batch.create_index("ix_inbound_events_phone_hash", ["phone_hash"])
        batch.create_index("ix_inbound_events_location_id", ["location_id"])
        batch.create_index("ix_inbound_events_status", ["status", "arrived_at"])

    op.create_table(
        "optouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.String(length=64), nullable=False),
        sa.Column("phone_hash", sa.String(length=64), nullable=False),
        sa.Column("phone_enc", sa.Text(), nullable=False),
        sa.Column("phone_masked", sa.String(length=24), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ghl_dnd", sa.String(length=16), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("location_id", "phone_hash", name="uq_optout"),
    )
    with op.batch_alter_table("optouts") as batch:
        batch.create_index("ix_optouts_location_id", ["location_id"])

    op.create_table(
        "contact_links",
        sa.Column("location_id", sa.String(length=64), nullable=False),
        sa.Column("phone_hash", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("location_id", "phone_hash"),
    )


def downgrade() -> None:
    op.drop_table("contact_links")
    op.drop_table("optouts")
    op.drop_table("inbound_events")
    with op.batch_alter_table("gateway_accounts") as batch:
        batch.drop_column("inbound_polled_at")
        batch.drop_column("inbound_cursor")
