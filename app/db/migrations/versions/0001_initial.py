"""initial schema: users, API keys, image series, courses, fractions, jobs, results, audit

Revision ID: 0001
Revises:
Create Date: 2026-11-27 13:24:23.345163
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.db import append_only

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('key_sha256', sa.String(length=64), nullable=False),
    sa.Column('key_prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_sha256', name=op.f('uq_api_keys_key_sha256')),
    sa.UniqueConstraint('name', name=op.f('uq_api_keys_name'))
    )
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('entity', sa.String(length=32), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_action'), ['action'], unique=False)

    op.create_table('image_series',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('series_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('frame_of_reference_uid', sa.String(length=64), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('series_description', sa.String(length=200), nullable=False),
    sa.Column('patient_position', sa.String(length=3), nullable=False),
    sa.Column('n_files', sa.Integer(), nullable=False),
    sa.Column('min_x_mm', sa.Float(), nullable=False),
    sa.Column('min_y_mm', sa.Float(), nullable=False),
    sa.Column('min_z_mm', sa.Float(), nullable=False),
    sa.Column('max_x_mm', sa.Float(), nullable=False),
    sa.Column('max_y_mm', sa.Float(), nullable=False),
    sa.Column('max_z_mm', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_image_series')),
    sa.UniqueConstraint('content_sha256', name=op.f('uq_image_series_content_sha256'))
    )
    with op.batch_alter_table('image_series', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_image_series_series_instance_uid'), ['series_instance_uid'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('full_name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('courses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('planning_series_id', sa.Integer(), nullable=False),
    sa.Column('isocenter_x_mm', sa.Float(), nullable=True),
    sa.Column('isocenter_y_mm', sa.Float(), nullable=True),
    sa.Column('isocenter_z_mm', sa.Float(), nullable=True),
    sa.Column('patient_position', sa.String(length=3), nullable=False),
    sa.Column('ptv_margin_mm', sa.Float(), nullable=False),
    sa.Column('dof', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('site', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['planning_series_id'], ['image_series.id'], name=op.f('fk_courses_planning_series_id_image_series')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_courses')),
    sa.UniqueConstraint('patient_id', 'planning_series_id', name=op.f('uq_courses_patient_id_planning_series_id'))
    )
    with op.batch_alter_table('courses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_courses_patient_id'), ['patient_id'], unique=False)

    op.create_table('fractions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('mvct_series_id', sa.Integer(), nullable=False),
    sa.Column('fraction_number', sa.Integer(), nullable=False),
    sa.Column('dof', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('isocenter_x_mm', sa.Float(), nullable=True),
    sa.Column('isocenter_y_mm', sa.Float(), nullable=True),
    sa.Column('isocenter_z_mm', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['course_id'], ['courses.id'], name=op.f('fk_fractions_course_id_courses')),
    sa.ForeignKeyConstraint(['mvct_series_id'], ['image_series.id'], name=op.f('fk_fractions_mvct_series_id_image_series')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fractions')),
    sa.UniqueConstraint('mvct_series_id', name=op.f('uq_fractions_mvct_series_id'))
    )
    with op.batch_alter_table('fractions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fractions_course_id'), ['course_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_fractions_patient_id'), ['patient_id'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fraction_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('error_status', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['fraction_id'], ['fractions.id'], name=op.f('fk_jobs_fraction_id_fractions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('fraction_id', name=op.f('uq_jobs_fraction_id')),
    sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name=op.f('ck_jobs_status')),
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_jobs_status'), ['status'], unique=False)

    op.create_table('registration_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fraction_id', sa.Integer(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('lateral_mm', sa.Float(), nullable=False),
    sa.Column('longitudinal_mm', sa.Float(), nullable=False),
    sa.Column('vertical_mm', sa.Float(), nullable=False),
    sa.Column('pitch_deg', sa.Float(), nullable=False),
    sa.Column('roll_deg', sa.Float(), nullable=False),
    sa.Column('yaw_deg', sa.Float(), nullable=False),
    sa.Column('trusted', sa.Boolean(), nullable=False),
    sa.Column('engine_version', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['fraction_id'], ['fractions.id'], name=op.f('fk_registration_results_fraction_id_fractions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registration_results')),
    sa.UniqueConstraint('fraction_id', name=op.f('uq_registration_results_fraction_id'))
    )
    append_only.create_guard('audit_events')
    append_only.create_guard('registration_results')


def downgrade() -> None:
    append_only.drop_guard('registration_results')
    append_only.drop_guard('audit_events')
    op.drop_table('registration_results')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_status'))

    op.drop_table('jobs')
    with op.batch_alter_table('fractions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fractions_patient_id'))
        batch_op.drop_index(batch_op.f('ix_fractions_course_id'))

    op.drop_table('fractions')
    with op.batch_alter_table('courses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_courses_patient_id'))

    op.drop_table('courses')
    op.drop_table('users')
    with op.batch_alter_table('image_series', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_image_series_series_instance_uid'))

    op.drop_table('image_series')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_action'))

    op.drop_table('audit_events')
    op.drop_table('api_keys')
