"""drill orders; deliveries remember when they were handed to the SMS outbox

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # An order marked drill: its messages carry 【演练】 and its figures are kept apart.
    with op.batch_alter_table('orders') as batch:
        batch.add_column(sa.Column('drill', sa.Boolean(), nullable=False, server_default=sa.false()))
    # A delivery stays `queued` until a modem accepted its first segment; handed_at says it is
    # already in the outbox, so that the fan-out never hands it twice.
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('handed_at', sa.DateTime(timezone=True), nullable=True))
    # Rows marked `sent` by earlier versions when merely handed to the outbox are left as they are:
    # their SMS rows tell the truth, and the board reads team states, not these.


def downgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_column('handed_at')
    with op.batch_alter_table('orders') as batch:
        batch.drop_column('drill')
