"""scheduled runs: durable report files (run.reports_written_at)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 00:30:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reports_written_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    # runs that ended before this revision wrote (or lost) their reports the old way: never rewrite them
    op.execute("UPDATE run SET reports_written_at = CURRENT_TIMESTAMP WHERE state <> 'running'")


def downgrade() -> None:
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_column('reports_written_at')
