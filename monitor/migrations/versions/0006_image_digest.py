"""placeholder images: result.image_digest (first-window hash, full size, content type), result.placeholder_uses

Revision ID: 0006
Revises: 0005b
Create Date: 2026-12-04 01:10:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes


revision = '0006'
down_revision = '0005b'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.add_column(sa.Column('image_digest', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True))
        batch_op.add_column(sa.Column('placeholder_uses', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.drop_column('placeholder_uses')
        batch_op.drop_column('image_digest')
