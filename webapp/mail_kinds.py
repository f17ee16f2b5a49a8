"""Every kind of mail Onboard sends, in one table: kind → builder.

A builder turns an :class:`~webapp.models.OutboxMessage` into a
:class:`~webapp.mail.Rendered` (subject and template context); the templates
are ``templates/email/<kind>.txt`` and ``.html``. The builders stay next to
the rules they serve (tokens, codes, statistics); this table is the only place
that says which kinds exist. Adding a kind: write the builder and the two
templates, then add one line here.
"""
from __future__ import annotations

from webapp.account import services as account
from webapp.auth import services as auth
from webapp.mail import Builder
from webapp.ops import stats

KINDS: dict[str, Builder] = {
    auth.VERIFY: auth._verify_mail,                          # sign-up and resend: verification link
    account.RESET: account._reset_mail,                      # password reset link
    account.PASSWORD_CHANGED: account._password_changed_mail,  # notice after a password change
    account.EMAIL_CODE: account._email_code_mail,            # 6-digit code to a new address
    account.EMAIL_CHANGED: account._email_changed_mail,      # notice to the old address
    stats.KIND: stats._daily_stats_mail,                     # daily statistics to admins
}
