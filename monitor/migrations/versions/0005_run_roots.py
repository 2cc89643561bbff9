"""run scope: the corpus roots a run was asked to check (run.roots)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 01:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # JSON list of normalised roots; NULL (runs from before this revision): the whole inventory
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('roots', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_column('roots')
