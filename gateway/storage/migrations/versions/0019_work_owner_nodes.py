"""Work claimed by nodes: an owner node on deliveries, SMS messages, call attempts, escalation
steps and webhook subscribers (issue 13)

Revision ID: 0019
Revises: 0018
"""
from alembic import op
import sqlalchemy as sa


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

TABLES = ('deliveries', 'sms_messages', 'call_attempts', 'escalation_steps')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('owner_node', sa.String(length=64), nullable=True))
            batch.create_index(f'ix_{table}_owner_node', ['owner_node'])
    with op.batch_alter_table('webhook_subscribers') as batch:
        batch.add_column(sa.Column('owner_node', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('webhook_subscribers') as batch:
        batch.drop_column('owner_node')
    for table in reversed(TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f'ix_{table}_owner_node')
            batch.drop_column('owner_node')
