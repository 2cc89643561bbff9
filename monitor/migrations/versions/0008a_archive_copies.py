"""archived copies of broken pages (archive_copy), a lookup cache with a TTL

Revision ID: 0008a
Revises: 0007
Create Date: 2026-12-04 02:40:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes


revision = '0008a'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('archive_copy',
    sa.Column('url_id', sa.Integer(), nullable=False),
    sa.Column('endpoint', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('looked_up_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('snapshot_url', sa.Text(), nullable=True),
    sa.Column('snapshot_at', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.ForeignKeyConstraint(['url_id'], ['url.id'], ),
    sa.PrimaryKeyConstraint('url_id')
    )


def downgrade() -> None:
    op.drop_table('archive_copy')
