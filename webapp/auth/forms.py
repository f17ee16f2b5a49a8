"""Auth forms (Flask-WTF: every form carries a CSRF token)."""
from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, Regexp, ValidationError

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


def code_field(label: str = "Code from the mail") -> StringField:
    """A 6-digit code field (spaces allowed, as people copy ``123 456``)."""
    return StringField(label, validators=[
        DataRequired(message="Enter the 6-digit code."),
        Regexp(r"^\s*(\d\s*){6}$", message="The code is 6 digits.")])


def email_field(label: str = "E-mail", optional: bool = False,
                field_id: str | None = None) -> EmailField:
    """An address field: normalised by :class:`EmailAddress`, at most 320 characters.
    ``field_id`` sets the HTML id where another form on the page has an ``email``."""
    first = Optional() if optional else DataRequired(message="Enter your e-mail address.")
    return EmailField(label, validators=[first, Length(max=320), EmailAddress()], id=field_id)


class RegisterForm(FlaskForm):
    """``/register``: e-mail (normalised), password twice; CSRF from Flask-WTF."""

    email = email_field()
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

    email = email_field()
    password = PasswordField("Password", validators=[DataRequired(message="Enter your password."),
                                                     Length(max=PASSWORD_MAX)])


class ResendForm(FlaskForm):
    """``/verify/resend``: the address to send a new link to."""

    email = email_field()


class LogoutForm(FlaskForm):
    """Empty form: log-out is a POST with a CSRF token."""


class ConfirmLinkForm(FlaskForm):
    """Empty form: the confirm button of a verification link's page (a POST with a
    CSRF token, so a mail scanner's GET of the link changes nothing)."""


class VerifyCodeForm(FlaskForm):
    """``/verify/code``: the code of the verification mail; ``email`` is asked
    only when the sign-up session does not know the account."""

    email = email_field(optional=True, field_id="code-email")
    code = code_field()


class AddressForm(FlaskForm):
    """``/register/address``: the corrected address (the current one to try
    again) and the account's password."""

    new_email = email_field("Address to send the mail to")
    password = PasswordField("Your password", validators=[
        DataRequired(message="Enter your password."), Length(max=PASSWORD_MAX)])
