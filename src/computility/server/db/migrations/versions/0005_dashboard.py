"""dashboard: browser sessions, supply-and-demand samples over time, and validation runs

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("lang", sa.String(8), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"],
                                name="fk_web_sessions_key_id_api_keys"),
        sa.PrimaryKeyConstraint("id", name="pk_web_sessions"),
    )
    op.create_index("ix_web_sessions_key", "web_sessions", ["key_id"])
    op.create_table(
        "samples",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("pool_id", sa.String(64), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("capacity_cu", sa.Float(), nullable=False),
        sa.Column("busy_cu", sa.Float(), nullable=False),
        sa.Column("queued_cu", sa.Float(), nullable=False),
        sa.Column("queued_tasks", sa.Integer(), nullable=False),
        sa.Column("price_micro_per_cu_hour", sa.BigInteger(), nullable=False),
        sa.Column("electricity_price_micro", sa.BigInteger(), nullable=False),
        sa.Column("carbon_kg_per_kwh", sa.Float(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_samples"),
    )
    op.create_index("ix_samples_at", "samples", ["at"])
    op.create_index("ix_samples_site_at", "samples", ["site_id", "at"])
    op.create_table(
        "validation_runs",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("trace", sa.String(256), nullable=False),
        sa.Column("network", sa.String(256), nullable=False),
        sa.Column("policies", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("replica", sa.String(128), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name="fk_validation_runs_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("id", name="pk_validation_runs"),
    )
    op.create_index("ix_validation_runs_created", "validation_runs", ["created_at"])


def downgrade() -> None:
    op.drop_table("validation_runs")
    op.drop_table("samples")
    op.drop_table("web_sessions")
