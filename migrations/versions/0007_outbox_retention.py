"""outbox retention: partial indexes on the sent, failed and unsent rows

``ix_outbox_messages_sent_at`` holds the sent rows only (``sent_at IS NOT NULL``):
it serves the retention purge (``sent_at < cutoff``) and the sent count of
``/metrics``, and, being partial, is never picked for the relay's
``sent_at IS NULL``. ``ix_outbox_messages_failed_at`` is rebuilt the same way
(failed rows only: the failed count, the failure list, the daily statistics).
``ix_outbox_messages_unsent`` holds only
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
SENT = 'sent_at IS NOT NULL'
FAILED = 'failed_at IS NOT NULL'


def upgrade():
    op.create_index('ix_outbox_messages_sent_at', 'outbox_messages', ['sent_at'], unique=False,
                    postgresql_where=sa.text(SENT), sqlite_where=sa.text(SENT))
    op.drop_index('ix_outbox_messages_failed_at', table_name='outbox_messages')
    op.create_index('ix_outbox_messages_failed_at', 'outbox_messages', ['failed_at'], unique=False,
                    postgresql_where=sa.text(FAILED), sqlite_where=sa.text(FAILED))
    op.create_index('ix_outbox_messages_unsent', 'outbox_messages', ['id'], unique=False,
                    postgresql_where=sa.text(UNSENT), sqlite_where=sa.text(UNSENT))


def downgrade():
    op.drop_index('ix_outbox_messages_unsent', table_name='outbox_messages')
    op.drop_index('ix_outbox_messages_sent_at', table_name='outbox_messages')
    op.drop_index('ix_outbox_messages_failed_at', table_name='outbox_messages')
    op.create_index('ix_outbox_messages_failed_at', 'outbox_messages', ['failed_at'], unique=False)
