"""uploads: photos, their derivatives, and users.avatar_upload_id

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('uploads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('original_key', sa.String(length=255), nullable=True),
    sa.Column('original_format', sa.String(length=16), nullable=False),
    sa.Column('original_bytes', sa.Integer(), nullable=False),
    sa.Column('original_width', sa.Integer(), nullable=False),
    sa.Column('original_height', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_uploads_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_uploads')),
    sa.UniqueConstraint('key', name=op.f('uq_uploads_key'))
    )
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_uploads_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_uploads_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_uploads_user_id'), ['user_id'], unique=False)

    op.create_table('upload_derivatives',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('upload_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('storage_key', sa.String(length=255), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('bytes', sa.Integer(), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['upload_id'], ['uploads.id'], name=op.f('fk_upload_derivatives_upload_id_uploads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload_derivatives')),
    sa.UniqueConstraint('upload_id', 'name', name=op.f('uq_upload_derivatives_upload_id'))
    )
    with op.batch_alter_table('upload_derivatives', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload_derivatives_upload_id'), ['upload_id'], unique=False)

    # users.avatar_upload_id. On SQLite this is one plain ALTER ... ADD COLUMN with
    # an inline REFERENCES (allowed for a nullable column), NOT a batch table copy:
    # with PRAGMA foreign_keys=ON (set for every connection in extensions.py) the
    # DROP TABLE of a batch copy runs an implicit DELETE FROM users, which fires
    # ON DELETE SET NULL / CASCADE on every table pointing at users (outbox rows
    # would lose their user_id). PostgreSQL gets a named constraint.
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE users ADD COLUMN avatar_upload_id INTEGER '
                   'CONSTRAINT fk_users_avatar_upload_id_uploads '
                   'REFERENCES uploads (id) ON DELETE SET NULL')
    else:
        op.add_column('users', sa.Column('avatar_upload_id', sa.Integer(), nullable=True))
        op.create_foreign_key('fk_users_avatar_upload_id_uploads', 'users', 'uploads',
                              ['avatar_upload_id'], ['id'], ondelete='SET NULL')


def downgrade():
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        # SQLite cannot DROP a column that has a REFERENCES clause: copy the table.
        # Run a downgrade on SQLite with no uploads in use (see upgrade's note on
        # the implicit DELETE of a table copy).
        with op.batch_alter_table('users', schema=None, recreate='always') as batch_op:
            batch_op.drop_column('avatar_upload_id')
    else:
        op.drop_constraint('fk_users_avatar_upload_id_uploads', 'users', type_='foreignkey')
        op.drop_column('users', 'avatar_upload_id')
    with op.batch_alter_table('upload_derivatives', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upload_derivatives_upload_id'))
    op.drop_table('upload_derivatives')
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_uploads_user_id'))
        batch_op.drop_index(batch_op.f('ix_uploads_status'))
        batch_op.drop_index(batch_op.f('ix_uploads_created_at'))
    op.drop_table('uploads')
