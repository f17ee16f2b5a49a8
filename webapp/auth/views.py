"""Auth views: thin wrappers that validate forms and call :mod:`services`."""
from __future__ import annotations

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.wrappers import Response

from webapp.auth import bp, captcha, services
from webapp.auth.forms import (CaptchaRegisterForm, LoginForm, LogoutForm, RegisterForm,
                               ResendForm)
from webapp.auth.redirects import local_path
from webapp.auth.tokens import TokenError
from webapp.extensions import limiter, login_manager
from webapp.ratelimit import limit

login_manager.user_loader(services.load_user)
login_manager.login_view = "auth.login"
login_manager.login_message = "Log in to see this page."


@bp.route("/register", methods=["GET", "POST"])
@limit("RATELIMIT_SIGNUP")
def register() -> str | Response | tuple[str, int]:
    """Sign-up form; on success 303 to the "check your inbox" page.

    With ``REGISTRATION_CAPTCHA`` on, the form also asks for the captcha; every
    rendering starts a new challenge and every POST uses the old one up; a
    wrong answer re-renders (400) and writes nothing.
    """
    use_captcha = captcha.enabled()
    form = CaptchaRegisterForm() if use_captcha else RegisterForm()
    if form.validate_on_submit():
        if use_captcha and not captcha.check(form.captcha.data):
            form.captcha.errors.append("The digits do not match the picture. Try these new ones.")
        else:
            try:
                services.register_user(form.email.data, form.password.data)
            except services.EmailTaken:
                form.email.errors.append(
                    "An account with this address exists already. Log in, or ask for a new "
                    "verification link below.")
            else:
                return redirect(url_for("auth.check_inbox"), code=303)
    elif use_captcha and request.method == "POST":
        captcha.check(None)  # a challenge is good for one POST only
    status = 400 if request.method == "POST" else 200
    ctx = {"captcha": captcha.template_context()} if use_captcha else {}
    return render_template("auth/register.html", form=form, **ctx), status


@bp.get("/register/done")
def check_inbox() -> str:
    """The "check your inbox" page."""
    return render_template("auth/check_inbox.html", resend_form=ResendForm())


@bp.get("/verify/<token>")
def verify(token: str) -> str | tuple[str, int]:
    """Verify once; an expired, used or forged link answers 400 with a resend form."""
    try:
        user = services.verify_email(token)
    except TokenError as exc:
        return render_template("auth/verify_failed.html", reason=exc.reason, message=str(exc),
                               resend_form=ResendForm()), 400
    return render_template("auth/verified.html", email=user.email)


@bp.post("/verify/resend")
@limit("RATELIMIT_MAIL")
def resend() -> str | tuple[str, int]:
    """Send a new verification link; the answer is the same for any address."""
    form = ResendForm()
    if not form.validate_on_submit():
        return render_template("auth/resend.html", form=form), 400
    services.resend_verification(form.email.data)
    return render_template("auth/resend_done.html")


@bp.route("/login", methods=["GET", "POST"])
@limit("RATELIMIT_LOGIN")
def login() -> str | Response | tuple[str, int]:
    """Log-in form. An unverified account is told why and offered a new link."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    unverified = False
    if form.validate_on_submit():
        result = services.authenticate(form.email.data, form.password.data)
        if result.ok and result.user is not None:
            # Checked before the session is written: a bad ``next`` only loses
            # the target, never the answer.
            target = local_path(request.args.get("next")) or url_for("main.index")
            login_user(result.user)
            flash("You are logged in.", "success")
            return redirect(target, code=303)
        if result.user is not None:
            unverified = True
            form.form_errors.append("Your e-mail address is not verified yet. Follow the link "
                                    "in the mail we sent, or ask for a new one below.")
        else:
            form.form_errors.append("Wrong e-mail address or password.")
    status = 400 if request.method == "POST" else 200
    resend_form = ResendForm(email=form.email.data) if unverified else None
    return render_template("auth/login.html", form=form, resend_form=resend_form), status


@bp.post("/logout")
@login_required
def logout() -> Response:
    """End the session (POST with a CSRF token, so a link cannot log people out).

    The account's session epoch moves on too (:func:`services.end_sessions`), so a
    copy of the session cookie (or a remember cookie) saved before is refused.
    """
    if LogoutForm().validate_on_submit():
        services.end_sessions(current_user._get_current_object())
        logout_user()
        flash("You are logged out.", "info")
    return redirect(url_for("main.index"), code=303)



# --- captcha (sign-up) ---------------------------------------------------------------


def _captcha_nonce() -> str:
    nonce = request.args.get("n", "")
    if not nonce or nonce != captcha.current_nonce():
        abort(404)
    return nonce


def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/captcha/image.png")
@limiter.limit(lambda: current_app.config["RATELIMIT_CAPTCHA"])
def captcha_image() -> Response:
    """The picture of the session's open challenge (``?n=<nonce>``); 404 otherwise.
    Drawn once per challenge: asking again draws a new challenge (new digits)."""
    nonce = captcha.draw(_captcha_nonce(), "img")
    return _no_store(Response(captcha.image_png(nonce), mimetype="image/png"))


@bp.get("/captcha/audio.wav")
@limiter.limit(lambda: current_app.config["RATELIMIT_CAPTCHA"])
def captcha_audio() -> Response:
    """The same challenge spoken (the accessible alternative); 404 otherwise.
    Drawn once per challenge, like the picture."""
    nonce = captcha.draw(_captcha_nonce(), "wav")
    return _no_store(Response(captcha.audio_wav(nonce), mimetype="audio/wav"))


@bp.post("/captcha/new")
@limiter.limit(lambda: current_app.config["RATELIMIT_CAPTCHA"])
def captcha_new() -> Response:
    """Start a new challenge (the refresh button; CSRF via ``X-CSRFToken``) and
    answer JSON ``{"image": url, "audio": url}``."""
    ctx = captcha.template_context()
    return _no_store(jsonify(image=ctx["image_url"], audio=ctx["audio_url"]))
