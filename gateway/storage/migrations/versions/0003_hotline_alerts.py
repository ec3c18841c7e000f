"""hotline alerts to the duty supervisor (overflow, no call-taker logged in)

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hotline_alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('line', sa.String(length=8), nullable=True),
    sa.Column('call_id', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('notify_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('notified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cleared_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('supervisor', sa.String(length=100), nullable=True),
    sa.Column('supervisor_phone', sa.String(length=20), nullable=True),
    sa.Column('sms_message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hotline_alerts'))
    )
    with op.batch_alter_table('hotline_alerts', schema=None) as batch_op:
        batch_op.create_index('ix_hotline_alerts_state', ['state', 'notify_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('hotline_alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_hotline_alerts_state')
    op.drop_table('hotline_alerts')
