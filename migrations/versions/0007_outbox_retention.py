"""outbox retention: index sent_at, partial index on the unsent rows

``ix_outbox_messages_sent_at`` serves the retention purge (``sent_at < cutoff``)
and the sent count of ``/metrics``; ``ix_outbox_messages_unsent`` holds only
rows neither sent nor failed, the relay's filter, so it stays small however
many sent rows the table keeps (PostgreSQL and SQLite both have partial indexes).

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

UNSENT = 'sent_at IS NULL AND failed_at IS NULL'


def upgrade():
    op.create_index(op.f('ix_outbox_messages_sent_at'), 'outbox_messages', ['sent_at'],
                    unique=False)
    op.create_index('ix_outbox_messages_unsent', 'outbox_messages', ['id'], unique=False,
                    postgresql_where=sa.text(UNSENT), sqlite_where=sa.text(UNSENT))


def downgrade():
    op.drop_index('ix_outbox_messages_unsent', table_name='outbox_messages')
    op.drop_index(op.f('ix_outbox_messages_sent_at'), table_name='outbox_messages')
