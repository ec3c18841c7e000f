"""call attempts: durable order calls (one row per attempt)

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('call_attempts',
    sa.Column('id', ID, nullable=False),
    sa.Column('order_id', ID, nullable=False),
    sa.Column('team_id', ID, nullable=False),
    sa.Column('member_id', ID, nullable=True),
    sa.Column('delivery_id', ID, nullable=True),
    sa.Column('step_id', ID, nullable=True),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('channel_id', sa.String(length=80), nullable=True),
    sa.Column('placed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], name=op.f('fk_call_attempts_delivery_id_deliveries')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_call_attempts_member_id_members')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_call_attempts_order_id_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['step_id'], ['escalation_steps.id'], name=op.f('fk_call_attempts_step_id_escalation_steps')),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_call_attempts_team_id_teams')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_attempts')),
    sa.UniqueConstraint('channel_id', name=op.f('uq_call_attempts_channel_id'))
    )
    with op.batch_alter_table('call_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_attempts_order_id'), ['order_id'], unique=False)
        batch_op.create_index('ix_call_attempts_state_due', ['state', 'due_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('call_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_call_attempts_state_due')
        batch_op.drop_index(batch_op.f('ix_call_attempts_order_id'))
    op.drop_table('call_attempts')
