"""datasets: what each site holds, and the dataset each task reads

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


# Every change is an ALTER TABLE in place, never a copy of the table (Alembic's batch mode on
# SQLite copies a table for a column with a default): a copy of `sites` or `tasks` cannot
# replace the original while other tables' rows refer to it, and copying every task is slow.


def upgrade() -> None:
    with op.batch_alter_table("sites", recreate="never") as batch:
        batch.add_column(sa.Column("datasets", sa.JSON(), nullable=True))
    with op.batch_alter_table("tasks", recreate="never") as batch:
        batch.add_column(sa.Column("dataset", sa.String(length=64), nullable=True))
        # Tasks submitted before this revision read no dataset.
        batch.add_column(sa.Column("data_local", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    # DROP COLUMN in place needs SQLite 3.35 or later.
    with op.batch_alter_table("tasks", recreate="never") as batch:
        batch.drop_column("data_local")
        batch.drop_column("dataset")
    with op.batch_alter_table("sites", recreate="never") as batch:
        batch.drop_column("datasets")
