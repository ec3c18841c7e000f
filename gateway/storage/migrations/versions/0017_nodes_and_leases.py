"""Several gateways on one database: nodes (heartbeats) and leases (singletons)

Revision ID: 0017
Revises: 0016
"""
from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'nodes',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('started_at', TS, nullable=False),
        sa.Column('heartbeat_at', TS, nullable=False),
        sa.Column('stopped_at', TS, nullable=True),
        sa.Column('modems', sa.Integer(), server_default='0', nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_nodes')),
    )
    op.create_table(
        'leases',
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('holder', sa.String(length=64), nullable=True),
        sa.Column('until', TS, nullable=True),
        sa.Column('changed_at', TS, nullable=True),
        sa.Column('generation', sa.BigInteger(), server_default='0', nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_leases')),
    )


def downgrade() -> None:
    op.drop_table('leases')
    op.drop_table('nodes')
