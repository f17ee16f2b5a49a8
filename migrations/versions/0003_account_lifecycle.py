"""account lifecycle: e-mail change requests (code mailed to the new address)

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('email_change_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('new_email', sa.String(length=320), nullable=False),
    sa.Column('code_salt', sa.String(length=64), nullable=False),
    sa.Column('code_hash', sa.String(length=128), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_email_change_requests_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_change_requests'))
    )
    with op.batch_alter_table('email_change_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_change_requests_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('email_change_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_change_requests_user_id'))
    op.drop_table('email_change_requests')
