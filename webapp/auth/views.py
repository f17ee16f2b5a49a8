"""Auth views: thin wrappers that validate forms and call :mod:`services`."""
from __future__ import annotations

from flask import (abort, current_app, flash, jsonify, redirect, render_template, request,
                   session, url_for)
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.wrappers import Response

from webapp.auth import bp, captcha, codes, services
from webapp.auth.forms import (AddressForm, CaptchaRegisterForm, ConfirmLinkForm, LoginForm,
                               LogoutForm, RegisterForm, ResendForm, VerifyCodeForm)
from webapp.auth.redirects import local_path
from webapp.auth.tokens import TokenError
from webapp.extensions import limiter, login_manager
from webapp.models import User
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
                user_id = services.register_user(form.email.data, form.password.data)
            except services.EmailTaken:
                form.email.errors.append(
                    "An account with this address exists already. Log in, or ask for a new "
                    "verification link below.")
            else:
                session[PENDING] = user_id
                return redirect(url_for("auth.check_inbox"), code=303)
    elif use_captcha and request.method == "POST":
        captcha.check(None)  # a challenge is good for one POST only
    status = 400 if request.method == "POST" else 200
    ctx = {"captcha": captcha.template_context()} if use_captcha else {}
    return render_template("auth/register.html", form=form, **ctx), status


#: Session key: the unverified account this browser signed up (or proved the
#: password of); only its holder sees that account's delivery problems.
PENDING = "pending_uid"


def _pending() -> User | None:
    return services.pending_account(session.get(PENDING))


def _check_inbox_page(status: int = 200, **forms: object) -> tuple[str, int]:
    pending = _pending()
    ctx = {"resend_form": ResendForm(formdata=None), "code_form": VerifyCodeForm(formdata=None),
           "address_form": AddressForm(formdata=None,
                                       new_email=pending.email if pending else None)}
    ctx.update(forms)
    return render_template("auth/check_inbox.html", pending=pending,
                           problem=services.verification_problem(pending) if pending else None,
                           **ctx), status


@bp.get("/register/done")
def check_inbox() -> tuple[str, int]:
    """The "check your inbox" page: a form for the mailed code, and for the
    browser that signed up (or proved the password at log-in) whether the mail
    could not be delivered, with a form to correct the address or try again."""
    return _check_inbox_page()


@bp.post("/verify/code")
@limit("RATELIMIT_CODE")
def verify_code() -> str | tuple[str, int]:
    """Verify with the mailed 6-digit code; the address comes from the sign-up
    session, or from the form when the session does not know it. Every failure
    (wrong, expired, used up, unknown address) answers the same 400."""
    form = VerifyCodeForm()
    pending = _pending()
    if form.validate_on_submit():
        email = pending.email if pending is not None else form.email.data
        if not email:
            form.email.errors.append("Enter the address you signed up with.")
        else:
            user = services.verify_with_code(email, form.code.data)
            if user is not None:
                session.pop(PENDING, None)
                return render_template("auth/verified.html", email=user.email)
            form.code.errors.append(codes.refused_message())
    return _check_inbox_page(400, code_form=form)


@bp.post("/register/address")
@limit("RATELIMIT_MAIL")
def change_address() -> Response | tuple[str, int]:
    """Correct the address of the unverified account this browser holds (or send
    to the same address again); needs the password. Success: 303 to the "check
    your inbox" page."""
    pending = _pending()
    if pending is None:
        flash("Log in to correct the address of an account that is not confirmed yet.", "info")
        return redirect(url_for("auth.login"), code=303)
    form = AddressForm()
    if form.validate_on_submit():
        try:
            services.correct_address(pending, form.password.data, form.new_email.data)
        except services.WrongPassword:
            form.password.errors.append("The password is not right.")
        except services.EmailTaken:
            form.new_email.errors.append("An account with this address exists already.")
        except services.MailThrottled:
            form.form_errors.append("A mail went out a moment ago. Wait a minute before "
                                    "asking again.")
        except services.AlreadyVerified:
            return redirect(url_for("auth.login"), code=303)
        else:
            flash(f"We are sending a new mail to {form.new_email.data}.", "info")
            return redirect(url_for("auth.check_inbox"), code=303)
    return _check_inbox_page(400, address_form=form)


@bp.route("/verify/<token>", methods=["GET", "POST"])
def verify(token: str) -> str | tuple[str, int]:
    """A verification link. GET (and HEAD) only read the link: they show a
    confirm button, or "already confirmed, log in"; mail scanners fetch links
    but do not submit forms, so the person's own click still works. The
    button's POST verifies. An expired or forged link answers 400 with a resend
    form."""
    try:
        user = services.check_verify_link(token)
        if user.is_verified:
            return render_template("auth/verified.html", email=user.email, already=True)
        form = ConfirmLinkForm()
        if form.validate_on_submit():
            user = services.verify_email(token)
            session.pop(PENDING, None)
            return render_template("auth/verified.html", email=user.email)
    except TokenError as exc:
        return render_template("auth/verify_failed.html", reason=exc.reason, message=str(exc),
                               resend_form=ResendForm()), 400
    return render_template("auth/confirm.html", form=form, email=user.email, token=token), (
        400 if request.method == "POST" else 200)


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
            session[PENDING] = result.user.id  # the password is proven: show its mail status
            form.form_errors.append("Your e-mail address is not verified yet. Follow the link "
                                    "or enter the code from the mail we sent, or ask for a new "
                                    "one below.")
        else:
            form.form_errors.append("Wrong e-mail address or password.")
    status = 400 if request.method == "POST" else 200
    pending = _pending() if unverified else None
    ctx = {}
    if pending is not None:
        ctx = {"problem": services.verification_problem(pending),
               "address_form": AddressForm(formdata=None, new_email=pending.email)}
    resend_form = ResendForm(email=form.email.data) if unverified else None
    return render_template("auth/login.html", form=form, resend_form=resend_form, **ctx), status


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
