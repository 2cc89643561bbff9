"""distributed runs: shards, fan-in counters and the alert outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:00:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('run_shard',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('shard_no', sa.Integer(), nullable=False),
    sa.Column('hosts', sa.Text(), nullable=False),
    sa.Column('url_lo', sa.Integer(), nullable=True),
    sa.Column('url_hi', sa.Integer(), nullable=True),
    sa.Column('lock', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=True),
    sa.Column('url_count', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('requeues', sa.Integer(), nullable=False),
    sa.Column('worker', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('job_id', sa.BigInteger(), nullable=True),
    sa.Column('checked', sa.Integer(), nullable=False),
    sa.Column('heartbeat_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'shard_no', name='uq_run_shard_no')
    )
    with op.batch_alter_table('run_shard', schema=None) as batch_op:
        batch_op.create_index('ix_run_shard_state', ['state', 'heartbeat_at'], unique=False)

    op.create_table('run_fanout',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('queue', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('shard_total', sa.Integer(), nullable=False),
    sa.Column('shard_done', sa.Integer(), nullable=False),
    sa.Column('shard_failed', sa.Integer(), nullable=False),
    sa.Column('only_failing', sa.Boolean(), nullable=False),
    sa.Column('lease_holder', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('finalized_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], ),
    sa.PrimaryKeyConstraint('run_id')
    )

    op.create_table('run_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('shard_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('run_event', schema=None) as batch_op:
        batch_op.create_index('ix_run_event_run', ['run_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('run_event', schema=None) as batch_op:
        batch_op.drop_index('ix_run_event_run')
    op.drop_table('run_event')
    op.drop_table('run_fanout')
    with op.batch_alter_table('run_shard', schema=None) as batch_op:
        batch_op.drop_index('ix_run_shard_state')
    op.drop_table('run_shard')
