"""operations: daily_stats (one row per day, unique day)

Revision ID: 0004
Revises: 0003
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('daily_stats',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('signups', sa.Integer(), nullable=False),
    sa.Column('verifications', sa.Integer(), nullable=False),
    sa.Column('logins', sa.Integer(), nullable=False),
    sa.Column('uploads', sa.Integer(), nullable=False),
    sa.Column('bytes_saved', sa.BigInteger(), nullable=False),
    sa.Column('mails_sent', sa.Integer(), nullable=False),
    sa.Column('mails_failed', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_daily_stats')),
    sa.UniqueConstraint('day', name=op.f('uq_daily_stats_day')),
    )


def downgrade():
    op.drop_table('daily_stats')
