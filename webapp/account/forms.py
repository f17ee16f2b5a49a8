"""Account forms (Flask-WTF, CSRF on each). The forms on ``/account`` carry a
hidden ``action`` field so one POST endpoint can tell them apart (and from the
avatar upload, which carries a ``photo`` file)."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField
from wtforms.validators import AnyOf, DataRequired, EqualTo, Length

from webapp.auth.forms import PASSWORD_MAX, EmailAddress, code_field, email_field, password_field


def _confirm_field() -> PasswordField:
    return PasswordField("New password again", validators=[
        DataRequired(message="Enter the new password again."),
        EqualTo("password", message="The passwords do not match."),
    ])


def _current_password() -> PasswordField:
    return PasswordField("Current password", validators=[
        DataRequired(message="Enter your current password."), Length(max=PASSWORD_MAX)])


class ForgotForm(FlaskForm):
    """``/password/forgot``: the address to mail a reset link to."""

    email = email_field()


class ResetForm(FlaskForm):
    """``/password/reset/<token>``: the new password, twice."""

    password = password_field("New password")
    password_confirm = _confirm_field()


class ChangePasswordForm(FlaskForm):
    """``/account``: current password, new password twice."""

    action = HiddenField(default="change_password", validators=[AnyOf(["change_password"])])
    current_password = _current_password()
    password = password_field("New password")
    password_confirm = _confirm_field()


class ChangeEmailForm(FlaskForm):
    """``/account``: the new address (a code is mailed there) and the current password."""

    action = HiddenField(default="change_email", validators=[AnyOf(["change_email"])])
    new_email = EmailField("New e-mail address", validators=[
        DataRequired(message="Enter the new address."), Length(max=320), EmailAddress()])
    current_password = _current_password()


class ConfirmEmailForm(FlaskForm):
    """``/account``: the 6-digit code mailed to the new address."""

    action = HiddenField(default="confirm_email", validators=[AnyOf(["confirm_email"])])
    code = code_field()


class ResetCodeForm(FlaskForm):
    """``/password/code``: the address the reset mail went to and its code."""

    email = email_field()
    code = code_field()

