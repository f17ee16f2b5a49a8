"""Auth forms (Flask-WTF: every form carries a CSRF token)."""
from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

# NIST SP 800-63B: at least 8 characters; a maximum keeps hashing bounded.
PASSWORD_MIN = 8
PASSWORD_MAX = 128


def normalize_email(address: str) -> str:
    """Normalise an address with email-validator and lower-case it.

    Args:
        address: what the person typed.

    Returns:
        The normalised address (``Ann@Example.COM`` → ``ann@example.com``).

    Raises:
        email_validator.EmailNotValidError: with a message fit to show.
    """
    return validate_email(address.strip(), check_deliverability=False).normalized.lower()


class EmailAddress:
    """WTForms validator: a well-formed address; stores the normalised form in
    ``field.data`` so the view never sees the raw one."""

    def __call__(self, form: FlaskForm, field: EmailField) -> None:
        try:
            field.data = normalize_email(field.data or "")
        except EmailNotValidError as exc:
            raise ValidationError(str(exc)) from exc


def password_field(label: str) -> PasswordField:
    """A new-password field: required, ``PASSWORD_MIN``-``PASSWORD_MAX`` characters
    (NIST SP 800-63B: length, no composition rules)."""
    return PasswordField(label, validators=[
        DataRequired(message="Enter a password."),
        Length(min=PASSWORD_MIN, max=PASSWORD_MAX,
               message=f"Use {PASSWORD_MIN} to {PASSWORD_MAX} characters."),
    ])


class RegisterForm(FlaskForm):
    """``/register``: e-mail (normalised), password twice; CSRF from Flask-WTF."""

    email = EmailField("E-mail", validators=[DataRequired(message="Enter your e-mail address."),
                                             Length(max=320), EmailAddress()])
    password = password_field("Password")
    password_confirm = PasswordField("Password again", validators=[
        DataRequired(message="Enter the password again."),
        EqualTo("password", message="The passwords do not match."),
    ])


class CaptchaRegisterForm(RegisterForm):
    """The sign-up form plus the captcha answer (checked by
    :func:`webapp.auth.captcha.check` in the view)."""

    captcha = StringField("Digits in the picture", validators=[
        DataRequired(message="Type the digits shown in the picture."), Length(max=20)])


class LoginForm(FlaskForm):
    """``/login``: e-mail and password."""

    email = EmailField("E-mail", validators=[DataRequired(message="Enter your e-mail address."),
                                             Length(max=320), EmailAddress()])
    password = PasswordField("Password", validators=[DataRequired(message="Enter your password."),
                                                     Length(max=PASSWORD_MAX)])


class ResendForm(FlaskForm):
    """``/verify/resend``: the address to send a new link to."""

    email = EmailField("E-mail", validators=[DataRequired(message="Enter your e-mail address."),
                                             Length(max=320), EmailAddress()])


class LogoutForm(FlaskForm):
    """Empty form: log-out is a POST with a CSRF token."""
