"""event log and webhook subscribers

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 17:45:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('event_log',
    sa.Column('id', ID, nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_log')),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('event_log', schema=None) as batch_op:
        batch_op.create_index('ix_event_log_at', ['at'], unique=False)

    op.create_table('webhook_subscribers',
    sa.Column('id', ID, nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('secret', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('cursor', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=200), nullable=True),
    sa.CheckConstraint("source in ('config','cli')", name=op.f('ck_webhook_subscribers_source')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_subscribers')),
    sa.UniqueConstraint('url', name=op.f('uq_webhook_subscribers_url'))
    )
    op.create_table('webhook_dead_letters',
    sa.Column('id', ID, nullable=False),
    sa.Column('subscriber_id', ID, nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('error', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['subscriber_id'], ['webhook_subscribers.id'],
                            name=op.f('fk_webhook_dead_letters_subscriber_id_webhook_subscribers'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_dead_letters'))
    )
    with op.batch_alter_table('webhook_dead_letters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_dead_letters_subscriber_id'), ['subscriber_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('webhook_dead_letters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_dead_letters_subscriber_id'))
    op.drop_table('webhook_dead_letters')
    op.drop_table('webhook_subscribers')
    with op.batch_alter_table('event_log', schema=None) as batch_op:
        batch_op.drop_index('ix_event_log_at')
    op.drop_table('event_log')
