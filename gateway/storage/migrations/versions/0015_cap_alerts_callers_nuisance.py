"""CAP alerts and order proposals; caller history index and flag; nuisance list

Revision ID: 0015
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
# 0005 is on main already; this branch's head must be single for `upgrade head` (the integrator
# re-chains revisions when merging).
down_revision = '0009'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('hotline_calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('caller_flag', sa.String(length=32), nullable=True))
        batch_op.create_index('ix_hotline_calls_caller_arrived', ['caller', 'arrived_at'], unique=False)
    op.create_table(
        'hotline_nuisance',
        sa.Column('id', ID, nullable=False),
        sa.Column('number', sa.String(length=40), nullable=False),
        sa.Column('reason', sa.String(length=200), nullable=False),
        sa.Column('notice', sa.Boolean(), nullable=False),
        sa.Column('added_at', TS, nullable=False),
        sa.Column('added_by', sa.String(length=100), nullable=False),
        sa.Column('expires_at', TS, nullable=True),
        sa.Column('removed_at', TS, nullable=True),
        sa.Column('removed_by', sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hotline_nuisance')),
    )
    op.create_index(op.f('ix_hotline_nuisance_number'), 'hotline_nuisance', ['number'], unique=False)
    op.create_table(
        'cap_alerts',
        sa.Column('id', ID, nullable=False),
        sa.Column('received_at', TS, nullable=False),
        sa.Column('source', sa.String(length=200), nullable=False),
        sa.Column('raw', sa.LargeBinary(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('element', sa.String(length=200), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('alert_key', sa.String(length=400), nullable=True),
        sa.Column('accepted_key', sa.String(length=400), nullable=True),
        sa.Column('msg_type', sa.String(length=16), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=True),
        sa.Column('references', sa.Text(), nullable=True),
        sa.Column('signature', sa.String(length=16), nullable=True),
        sa.Column('action', sa.String(length=24), nullable=True),
        sa.Column('rule', sa.String(length=100), nullable=True),
        sa.Column('headline', sa.Text(), nullable=True),
        sa.Column('text_full', sa.Text(), nullable=True),
        sa.Column('order_id', ID, nullable=True),
        sa.Column('proposal_id', ID, nullable=True),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_cap_alerts_order_id_orders')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_cap_alerts')),
        sa.UniqueConstraint('accepted_key', name=op.f('uq_cap_alerts_accepted_key')),
    )
    op.create_index('ix_cap_alerts_alert_key', 'cap_alerts', ['alert_key'], unique=False)
    op.create_table(
        'order_proposals',
        sa.Column('id', ID, nullable=False),
        sa.Column('created_at', TS, nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('cap_alert_id', ID, nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('request', sa.JSON(), nullable=False),
        sa.Column('text_full', sa.Text(), nullable=True),
        sa.Column('rule', sa.String(length=100), nullable=True),
        sa.Column('decided_at', TS, nullable=True),
        sa.Column('decided_by', sa.String(length=100), nullable=True),
        sa.Column('order_id', ID, nullable=True),
        sa.ForeignKeyConstraint(['cap_alert_id'], ['cap_alerts.id'], name=op.f('fk_order_proposals_cap_alert_id_cap_alerts')),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_proposals_order_id_orders')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_order_proposals')),
    )
    op.create_index('ix_order_proposals_state', 'order_proposals', ['state'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_order_proposals_state', table_name='order_proposals')
    op.drop_table('order_proposals')
    op.drop_index('ix_cap_alerts_alert_key', table_name='cap_alerts')
    op.drop_table('cap_alerts')
    op.drop_index(op.f('ix_hotline_nuisance_number'), table_name='hotline_nuisance')
    op.drop_table('hotline_nuisance')
    with op.batch_alter_table('hotline_calls', schema=None) as batch_op:
        batch_op.drop_index('ix_hotline_calls_caller_arrived')
        batch_op.drop_column('caller_flag')
