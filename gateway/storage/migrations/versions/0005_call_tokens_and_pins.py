"""order-call tokens used; members' feedback-line PIN

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'call_tokens_used',
        sa.Column('id', ID, nullable=False),
        sa.Column('token_sha256', sa.String(length=64), nullable=False),
        sa.Column('delivery_id', ID, nullable=True),
        sa.Column('phone', sa.String(length=40), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('call_id', sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_call_tokens_used')),
        sa.UniqueConstraint('token_sha256', name=op.f('uq_call_tokens_used_token_sha256')),
    )
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pin_hash', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_column('pin_hash')
    op.drop_table('call_tokens_used')
