"""distributed runs: durable alert delivery (run_fanout.alerts_emitted_at)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 09:00:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('run_fanout', schema=None) as batch_op:
        batch_op.add_column(sa.Column('alerts_emitted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    # runs that ended before this revision emitted (or lost) their alerts the old way: never replay them
    op.execute(
        "UPDATE run_fanout SET alerts_emitted_at = CURRENT_TIMESTAMP "
        "WHERE run_id IN (SELECT id FROM run WHERE state <> 'running')"
    )


def downgrade() -> None:
    with op.batch_alter_table('run_fanout', schema=None) as batch_op:
        batch_op.drop_column('alerts_emitted_at')
