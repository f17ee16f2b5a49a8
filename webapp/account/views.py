"""Account views: thin wrappers that validate forms and call :mod:`services`."""
from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user
from werkzeug.wrappers import Response

from webapp.account import bp, services
from webapp.account.forms import (ChangeEmailForm, ChangePasswordForm, ConfirmEmailForm,
                                  ForgotForm, ResetCodeForm, ResetForm)
from webapp.auth import codes
from webapp.auth.tokens import TokenError
from webapp.extensions import limiter
from webapp.ratelimit import limit

# --- forgotten password --------------------------------------------------------------


@bp.route("/password/forgot", methods=["GET", "POST"])
@limit("RATELIMIT_MAIL")
def forgot_password() -> str | tuple[str, int]:
    """Ask for a reset link; the answer is the same whether the address has an
    account or not, and whether or not the throttle let a mail go."""
    form = ForgotForm()
    if form.validate_on_submit():
        services.request_password_reset(form.email.data)
        return render_template("account/forgot_sent.html", email=form.email.data,
                               code_form=ResetCodeForm(formdata=None))
    status = 400 if request.method == "POST" else 200
    return render_template("account/forgot.html", form=form), status


@bp.post("/password/code")
@limit("RATELIMIT_RESET")
def reset_code() -> Response | tuple[str, int]:
    """The code of a reset mail, typed on the page after ``/password/forgot``:
    right → 303 to the new-password form (``/password/reset/<token>``); any
    failure (wrong, expired, used up, unknown address) → the same 400 page."""
    form = ResetCodeForm()
    if form.validate_on_submit():
        token = services.redeem_reset_code(form.email.data, form.code.data)
        if token is not None:
            return redirect(url_for("account.reset_password", token=token), code=303)
        form.code.errors.append(codes.refused_message())
    return render_template("account/forgot_sent.html", email=form.email.data or "",
                           code_form=form), 400


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@limit("RATELIMIT_RESET")
def reset_password(token: str) -> str | Response | tuple[str, int]:
    """Set a new password from a mailed link. An expired, used or forged link
    answers 400 with a form to ask for a new one (nothing is sent by itself)."""
    try:
        services.check_reset_token(token)
    except TokenError as exc:
        return _reset_failed(exc)
    form = ResetForm()
    if form.validate_on_submit():
        try:
            services.reset_password(token, form.password.data)
        except TokenError as exc:  # used by a concurrent request meanwhile
            return _reset_failed(exc)
        flash("Your password has been changed and every session was logged out. "
              "Log in with the new password.", "success")
        return redirect(url_for("auth.login"), code=303)
    status = 400 if request.method == "POST" else 200
    return render_template("account/reset.html", form=form, token=token), status


def _reset_failed(exc: TokenError) -> tuple[str, int]:
    return render_template("account/reset_failed.html", reason=exc.reason, message=str(exc),
                           form=ForgotForm()), 400


# --- the account page ----------------------------------------------------------------


@bp.route("/account", methods=["GET", "POST"])
@login_required
@limit("RATELIMIT_CODE")
def account() -> Any:
    """Profile, password change, e-mail change; the avatar form on this page posts
    to ``POST /account/avatar`` (``webapp.uploads.views.avatar``).

    The forms are told apart by their hidden ``action`` field; a POST without a
    known one (a file included) answers 400 and stores nothing.
    """
    action = request.form.get("action") if request.method == "POST" else None
    forms = {"password_form": ChangePasswordForm(formdata=None),
             "email_form": ChangeEmailForm(formdata=None),
             "code_form": ConfirmEmailForm(formdata=None)}
    if action == "change_password":
        forms["password_form"] = form = ChangePasswordForm()
        if form.validate_on_submit():
            try:
                services.change_password(current_user, form.current_password.data,
                                         form.password.data)
            except services.WrongPassword:
                form.current_password.errors.append("The current password is not right.")
            else:
                # The epoch changed: other sessions are out; keep this one in.
                login_user(current_user._get_current_object())
                flash("Your password has been changed. Other sessions were logged out.",
                      "success")
                return redirect(url_for("account.account"), code=303)
    elif action == "change_email":
        forms["email_form"] = form = ChangeEmailForm()
        if form.validate_on_submit():
            if form.new_email.data == current_user.email:
                form.new_email.errors.append("That is already your address.")
            else:
                try:
                    services.request_email_change(current_user, form.current_password.data,
                                                  form.new_email.data)
                except services.WrongPassword:
                    form.current_password.errors.append("The current password is not right.")
                except services.EmailChangeThrottled:
                    form.form_errors.append("A code was sent a moment ago. Wait a minute "
                                            "before asking again.")
                else:
                    flash(f"We sent a 6-digit code to {form.new_email.data}. Enter it below "
                          "to change your address.", "info")
                    return redirect(url_for("account.account"), code=303)
    elif action == "confirm_email":
        forms["code_form"] = form = ConfirmEmailForm()
        if form.validate_on_submit():
            try:
                services.confirm_email_change(current_user, form.code.data)
            except services.CodeError as exc:
                form.code.errors.append(str(exc))
            else:
                flash(f"Your e-mail address is now {current_user.email}.", "success")
                return redirect(url_for("account.account"), code=303)
    elif request.method == "POST":
        abort(400)
    status = 400 if request.method == "POST" else 200
    return render_template("account/account.html", pending=services.pending_change(current_user),
                           **forms), status

