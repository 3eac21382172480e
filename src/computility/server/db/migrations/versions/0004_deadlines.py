"""deadlines: each task's absolute deadline, and the hour a time-shifted task is held until

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# In place, as 0003: ALTER TABLE ADD COLUMN of nullable columns, never a copy of `tasks` (rows of
# other tables refer to it, and copying every task is slow). Tasks submitted before this revision
# have no deadline the scheduler knows of and were never held for hours: both columns stay null.


def upgrade() -> None:
    with op.batch_alter_table("tasks", recreate="never") as batch:
        batch.add_column(sa.Column("deadline_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("not_before", sa.Float(), nullable=True))


def downgrade() -> None:
    # DROP COLUMN in place needs SQLite 3.35 or later.
    with op.batch_alter_table("tasks", recreate="never") as batch:
        batch.drop_column("not_before")
        batch.drop_column("deadline_at")
