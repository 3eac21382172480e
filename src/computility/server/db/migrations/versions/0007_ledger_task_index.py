"""ledger by task: a task's bill (its status, its explanation) is read by task id

Without it every read of one task's cost scanned the whole ledger, so status reads slowed as the
ledger grew.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ledger_task", "ledger", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_ledger_task", table_name="ledger")
