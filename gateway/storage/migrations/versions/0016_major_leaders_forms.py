"""Major orders, situation reports, leaders and their notifications, the formal feedback form

Revision ID: 0016
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0009'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('orders') as b:
        b.add_column(sa.Column('major', sa.Boolean(), nullable=False, server_default='0'))
    with op.batch_alter_table('order_teams') as b:
        b.add_column(sa.Column('form_complete', sa.Boolean(), nullable=False, server_default='0'))
    op.create_table(
        'leaders',
        sa.Column('id', ID, nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('role', sa.String(length=24), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=True),
        sa.Column('e164', sa.String(length=20), nullable=True),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_at', TS, nullable=False),
        sa.CheckConstraint("role in ('commander_in_chief','deputy_commander','office_director','county_leader')",
                           name=op.f('ck_leaders_role')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_leaders')),
        sa.UniqueConstraint('name', name=op.f('uq_leaders_name')),
    )
    op.create_table(
        'situation_reports',
        sa.Column('id', ID, nullable=False),
        sa.Column('order_id', ID, nullable=False),
        sa.Column('order_team_id', ID, nullable=False),
        sa.Column('member_id', ID, nullable=True),
        sa.Column('phone', sa.String(length=40), nullable=True),
        sa.Column('channel', sa.String(length=8), nullable=False),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('audio_path', sa.String(length=500), nullable=True),
        sa.Column('audio_seconds', sa.Float(), nullable=True),
        sa.Column('raw_id', ID, nullable=True),
        sa.Column('recorded_at', TS, nullable=False),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_situation_reports_order_id_orders'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['order_team_id'], ['order_teams.id'],
                                name=op.f('fk_situation_reports_order_team_id_order_teams'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_situation_reports_member_id_members')),
        sa.ForeignKeyConstraint(['raw_id'], ['inbound_raw.id'], name=op.f('fk_situation_reports_raw_id_inbound_raw')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_situation_reports')),
    )
    op.create_index(op.f('ix_situation_reports_order_id'), 'situation_reports', ['order_id'])
    op.create_table(
        'leader_notifications',
        sa.Column('id', ID, nullable=False),
        sa.Column('order_id', ID, nullable=True),
        sa.Column('leader_id', ID, nullable=False),
        sa.Column('phone', sa.String(length=20), nullable=False),
        sa.Column('kind', sa.String(length=24), nullable=False),
        sa.Column('dedupe', sa.String(length=100), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('created_at', TS, nullable=False),
        sa.Column('handed_at', TS, nullable=True),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_leader_notifications_order_id_orders'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['leader_id'], ['leaders.id'], name=op.f('fk_leader_notifications_leader_id_leaders')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_leader_notifications')),
        sa.UniqueConstraint('leader_id', 'dedupe', name='uq_leader_notifications_leader_dedupe'),
    )
    op.create_index(op.f('ix_leader_notifications_order_id'), 'leader_notifications', ['order_id'])
    op.create_index('ix_leader_notifications_state', 'leader_notifications', ['state'])
    op.create_table(
        'order_notes',
        sa.Column('id', ID, nullable=False),
        sa.Column('order_id', ID, nullable=False),
        sa.Column('leader_id', ID, nullable=True),
        sa.Column('author', sa.String(length=100), nullable=False),
        sa.Column('phone', sa.String(length=40), nullable=True),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('raw_id', ID, nullable=True),
        sa.Column('at', TS, nullable=False),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_notes_order_id_orders'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['leader_id'], ['leaders.id'], name=op.f('fk_order_notes_leader_id_leaders')),
        sa.ForeignKeyConstraint(['raw_id'], ['inbound_raw.id'], name=op.f('fk_order_notes_raw_id_inbound_raw')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_order_notes')),
    )
    op.create_index(op.f('ix_order_notes_order_id'), 'order_notes', ['order_id'])
    op.create_table(
        'feedback_forms',
        sa.Column('id', ID, nullable=False),
        sa.Column('order_team_id', ID, nullable=False),
        sa.Column('result', sa.Text(), nullable=True),
        sa.Column('follow_up', sa.Boolean(), nullable=True),
        sa.Column('responsible_person', sa.String(length=100), nullable=True),
        sa.Column('responsible_unit', sa.String(length=200), nullable=True),
        sa.Column('casualties', sa.Text(), nullable=True),
        sa.Column('remarks', sa.Text(), nullable=True),
        sa.Column('asked_field', sa.String(length=24), nullable=True),
        sa.Column('complete', sa.Boolean(), nullable=False),
        sa.Column('completed_at', TS, nullable=True),
        sa.Column('updated_at', TS, nullable=False),
        sa.Column('updated_by', sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(['order_team_id'], ['order_teams.id'],
                                name=op.f('fk_feedback_forms_order_team_id_order_teams'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_feedback_forms')),
        sa.UniqueConstraint('order_team_id', name=op.f('uq_feedback_forms_order_team_id')),
    )


def downgrade() -> None:
    op.drop_table('feedback_forms')
    op.drop_index(op.f('ix_order_notes_order_id'), table_name='order_notes')
    op.drop_table('order_notes')
    op.drop_index('ix_leader_notifications_state', table_name='leader_notifications')
    op.drop_index(op.f('ix_leader_notifications_order_id'), table_name='leader_notifications')
    op.drop_table('leader_notifications')
    op.drop_index(op.f('ix_situation_reports_order_id'), table_name='situation_reports')
    op.drop_table('situation_reports')
    op.drop_table('leaders')
    with op.batch_alter_table('order_teams') as b:
        b.drop_column('form_complete')
    with op.batch_alter_table('orders') as b:
        b.drop_column('major')
