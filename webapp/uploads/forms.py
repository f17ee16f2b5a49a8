"""Upload forms (Flask-WTF: CSRF on every form)."""
from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired


class PhotoForm(FlaskForm):
    """One photo in the field ``photo``. The format is checked on the file's header
    by :func:`webapp.imaging.sniff`, never from its name or Content-Type."""

    photo = FileField("Photo (JPEG, PNG or WebP)",
                      validators=[FileRequired(message="Choose a photo to upload.")],
                      render_kw={"accept": "image/jpeg,image/png,image/webp"})


class DeleteForm(FlaskForm):
    """Empty form: deleting is a POST with a CSRF token."""
