"""outbox_reliability: claim marker and counters on outbox_messages

The mail send claims its outbox row (``claimed_at``, ``claimed_by``) in a
committed write before talking SMTP, so a redelivery after a worker crash
mid-send is detected and counted (``takeovers``); ``publish_count`` counts how
often the send task was published (web, relay, operator retry).

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("outbox_messages") as batch:
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("claimed_by", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("takeovers", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("publish_count", sa.Integer(), nullable=False,
                                   server_default="0"))
        # The operator's list of failures (flask mail-failures) filters on it.
        batch.create_index("ix_outbox_messages_failed_at", ["failed_at"])


def downgrade():
    with op.batch_alter_table("outbox_messages") as batch:
        batch.drop_index("ix_outbox_messages_failed_at")
        batch.drop_column("publish_count")
        batch.drop_column("takeovers")
        batch.drop_column("claimed_by")
        batch.drop_column("claimed_at")
