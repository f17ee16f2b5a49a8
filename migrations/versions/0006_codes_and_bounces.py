"""codes and bounces: mailed 6-digit codes, bounce records, outbox bounced_at

``account_codes`` holds the code mailed with a verification or reset link (a
salt and an HMAC, never the code); ``mail_bounces`` records mails that did not
arrive and is the suppression list; ``outbox_messages.bounced_at`` marks a row
a delivery status notification reported.

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('account_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('code_salt', sa.String(length=64), nullable=False),
    sa.Column('code_hash', sa.String(length=128), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_account_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_codes')),
    sa.UniqueConstraint('user_id', 'purpose', name=op.f('uq_account_codes_user_id'))
    )
    op.create_table('mail_bounces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('hard', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('diagnostic', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cleared_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox_messages.id'], name=op.f('fk_mail_bounces_outbox_id_outbox_messages'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_bounces'))
    )
    with op.batch_alter_table('mail_bounces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mail_bounces_address'), ['address'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_bounces_outbox_id'), ['outbox_id'], unique=False)
    with op.batch_alter_table('outbox_messages') as batch:
        batch.add_column(sa.Column('bounced_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('outbox_messages') as batch:
        batch.drop_column('bounced_at')
    with op.batch_alter_table('mail_bounces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mail_bounces_outbox_id'))
        batch_op.drop_index(batch_op.f('ix_mail_bounces_address'))
    op.drop_table('mail_bounces')
    op.drop_table('account_codes')
