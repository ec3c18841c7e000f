"""inbound_raw.raw_sha256: the duplicate check on a re-read SIM looks up an index, not every raw SMS

Revision ID: 0009
Revises: 0007
"""
import hashlib

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0007'
branch_labels = None
depends_on = None

DEDUP_CHANNELS = ('sms', 'sms_part', 'status_report')


def upgrade() -> None:
    with op.batch_alter_table('inbound_raw', schema=None) as batch_op:
        batch_op.add_column(sa.Column('raw_sha256', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_inbound_raw_raw_sha256', ['raw_sha256'], unique=False)
    # Rows kept before this revision: their digest too, or a PDU re-read from the SIM after the
    # upgrade would not be recognised as already stored.
    conn = op.get_bind()
    ir = sa.table('inbound_raw', sa.column('id', sa.BigInteger), sa.column('channel', sa.String),
                  sa.column('raw', sa.LargeBinary), sa.column('raw_sha256', sa.String))
    rows = conn.execute(sa.select(ir.c.id, ir.c.raw).where(ir.c.raw.is_not(None),
                                                           ir.c.channel.in_(DEDUP_CHANNELS))).all()
    for rid, raw in rows:
        conn.execute(ir.update().where(ir.c.id == rid).values(raw_sha256=hashlib.sha256(bytes(raw)).hexdigest()))


def downgrade() -> None:
    with op.batch_alter_table('inbound_raw', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_raw_raw_sha256')
        batch_op.drop_column('raw_sha256')
