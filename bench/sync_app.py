"""Bench-only baseline: the sign-up view as the usual tutorial writes it.

It validates the same :class:`~webapp.auth.forms.RegisterForm`, hashes with the
same argon2id parameters, inserts the user, then builds the verification mail
and calls ``flask_mail``'s ``mail.send`` inline, so the page waits for the SMTP
server. Onboard's own view does the same work up to the commit and hands the mail
to a Celery worker through the outbox instead.

Served by gunicorn exactly like the real app: ``gunicorn ... bench.sync_app:app``
(the route is ``/sync/register``). Never registered in the real app.
"""
from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_mail import Message
from sqlalchemy import select
from werkzeug.wrappers import Response

from webapp import create_app
from webapp.auth import tokens
from webapp.auth.forms import RegisterForm
from webapp.auth.passwords import hash_password
from webapp.extensions import db, mail
from webapp.models import User
from webapp.urls import external_url

bp = Blueprint("bench_sync", __name__)


@bp.route("/sync/register", methods=["GET", "POST"])
def register() -> str | Response | tuple[str, int]:
    """Validate, insert the user, send the verification mail inline, 303.

    The GET renders the real sign-up form (its CSRF token is valid for this POST
    too: same secret, same session cookie).
    """
    form = RegisterForm()
    if form.validate_on_submit():
        email = form.email.data
        if db.session.scalar(select(User).where(User.email == email)) is not None:
            form.email.errors.append("An account with this address exists already.")
        else:
            user = User(email=email, password_hash=hash_password(form.password.data))
            db.session.add(user)
            db.session.commit()
            token = tokens.make_token("verify", {"uid": user.id, "email": email,
                                                 "jti": f"sync-verify-{user.id}"})
            ctx = {"link": external_url("auth.verify", token=token), "email": email,
                   "hours": current_app.config["VERIFY_TOKEN_MAX_AGE"] // 3600,
                   "base_url": current_app.config["BASE_URL"]}
            msg = Message("Confirm your e-mail address for Onboard", recipients=[email],
                          body=render_template("email/verify.txt", **ctx),
                          html=render_template("email/verify.html", **ctx))
            mail.send(msg)  # the page waits for SMTP here
            return redirect(url_for("auth.check_inbox"), code=303)
    status = 400 if request.method == "POST" else 200
    return render_template("auth/register.html", form=form), status


app = create_app()
app.register_blueprint(bp)
