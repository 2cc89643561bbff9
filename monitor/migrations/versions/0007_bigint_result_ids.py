"""64-bit ids for the tables that grow every night: result, size_check, state_change

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 01:10:00

On PostgreSQL a serial id and its sequence are 32-bit: at 10 million URLs a night the result
table's sequence runs out after about 215 nights. SQLite's rowids are 64-bit already.
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

TABLES = ("result", "size_check", "state_change")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.alter_column(table, "id", type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=False)
        op.execute(f"ALTER SEQUENCE {table}_id_seq AS bigint")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER SEQUENCE {table}_id_seq AS integer")
        op.alter_column(table, "id", type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False)
