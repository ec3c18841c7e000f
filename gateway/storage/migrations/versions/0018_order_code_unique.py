"""Order codes unique among open orders, in the database (several nodes choose codes at once)

Revision ID: 0018
Revises: 0017
"""
from alembic import op
import sqlalchemy as sa


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Two open orders with one code could only come from several writers before this index: the
    # upgrade then fails naming the index; close one of each pair and upgrade again.
    op.create_index('uq_orders_open_code', 'orders', ['code'], unique=True,
                    postgresql_where=sa.text("state = 'open'"), sqlite_where=sa.text("state = 'open'"))


def downgrade() -> None:
    op.drop_index('uq_orders_open_code', table_name='orders')
