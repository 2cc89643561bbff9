"""soft 404s and title drift: soft_baseline (made-up URL probes per host and prefix), occurrence.title

Revision ID: 0008b
Revises: 0008a
Create Date: 2026-12-04 02:40:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes


revision = '0008b'
down_revision = '0008a'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'soft_baseline',
        sa.Column('host', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column('prefix', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column('probed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('status', sa.Integer(), nullable=False),
        sa.Column('soft', sa.Boolean(), nullable=False),
        sa.Column('title', sa.Text(), nullable=True),
        sa.Column('fingerprint', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('host', 'prefix'),
    )
    with op.batch_alter_table('soft_baseline', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_soft_baseline_probed_at'), ['probed_at'], unique=False)
    with op.batch_alter_table('occurrence', schema=None) as batch_op:
        batch_op.add_column(sa.Column('title', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('occurrence', schema=None) as batch_op:
        batch_op.drop_column('title')
    with op.batch_alter_table('soft_baseline', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_soft_baseline_probed_at'))
    op.drop_table('soft_baseline')
