"""run_shard.host_share: the share of a split host's request limit that one slice may hold

Revision ID: 0008c
Revises: 0008b
Create Date: 2026-12-04 02:50:00

Slices of a host split over several shards now run at the same time, each within its share;
the shares of a host add up to its per-host limit. NULL: a shard of whole hosts.
"""

from alembic import op
import sqlalchemy as sa


revision = '0008c'
down_revision = '0008b'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_shard") as batch:
        batch.add_column(sa.Column("host_share", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_shard") as batch:
        batch.drop_column("host_share")
