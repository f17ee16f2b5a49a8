"""Upload views: thin wrappers that validate forms and call :mod:`services`.

The web never decodes an image: it reads the header (:func:`webapp.imaging.sniff`),
stores the file and leaves the work to the ``images`` workers.
"""
from __future__ import annotations

from flask import (abort, current_app, flash, jsonify, redirect, render_template, request,
                   send_from_directory, url_for)
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from webapp.errors import error_response, wants_json
from webapp.imaging import ImageRejected
from webapp.ratelimit import limit, per_user
from webapp.uploads import bp, services
from webapp.uploads.forms import DeleteForm, PhotoForm
from webapp.storage import DERIVATIVES, LocalStore, StoreUnavailable, check_key, get_store

#: One count per account over every route that accepts a file (each upload costs
#: a worker's CPU): ``UPLOAD_RATE_LIMIT``, POSTs only.
upload_limit = limit("UPLOAD_RATE_LIMIT", key_func=per_user, scope="upload")


def _accept(form: PhotoForm, purpose: str) -> int | None:
    """Validate ``form`` and create the upload; returns its id, or None with the
    reason appended to ``form.photo.errors``."""
    if not form.validate_on_submit():
        return None
    try:
        return services.create_upload(current_user.id, form.photo.data, purpose).id
    except ImageRejected as exc:
        form.photo.errors = [*form.photo.errors, exc.reason]
        return None


def _first_error(form: PhotoForm) -> str:
    errors = list(form.photo.errors) + [e for f in form for e in f.errors if f is not form.photo]
    return errors[0] if errors else "The upload could not be accepted."


@bp.route("/uploads", methods=["GET", "POST"])
@login_required
@upload_limit
def index() -> str | Response | tuple[str | Response, int]:
    """The user's photos and the upload form; a good upload answers 303 to its page.

    A refused file re-renders the form with the reason (400), or answers a JSON
    error when the client asks for JSON. Over ``UPLOAD_RATE_LIMIT`` (shared with
    ``POST /account/avatar``): 429, nothing stored or published.
    """
    form = PhotoForm()
    status = 200
    if request.method == "POST":
        upload_id = _accept(form, "photo")
        if upload_id is not None:
            return redirect(url_for("uploads.show", upload_id=upload_id), code=303)
        if wants_json():
            return error_response(400, _first_error(form), "invalid_upload")
        status = 400
    return render_template("uploads/index.html", form=form, delete_form=DeleteForm(),
                           uploads=services.list_for(current_user.id)), status


@bp.get("/uploads/<int:upload_id>")
@login_required
def show(upload_id: int) -> str | Response:
    """One upload: HTML that polls for live status, or the JSON status document."""
    upload = services.get_owned(current_user.id, upload_id)
    if upload is None:
        abort(404)
    data = services.to_json(upload)
    if wants_json():
        response = jsonify(data)
        response.headers["Cache-Control"] = "no-store"
        return response
    return render_template("uploads/show.html", upload=upload, data=data,
                           delete_form=DeleteForm())


@bp.post("/uploads/<int:upload_id>/delete")
@login_required
def delete(upload_id: int) -> Response:
    """Delete an upload and its files (POST with CSRF); another user's gives 404."""
    upload = services.get_owned(current_user.id, upload_id)
    if upload is None:
        abort(404)
    if not DeleteForm().validate_on_submit():
        abort(400)
    services.delete_upload(upload)
    flash("The photo and its files were deleted.", "info")
    return redirect(url_for("uploads.index"), code=303)


@bp.get("/media/<path:path>")
def media(path: str) -> Response:
    """A stored derivative: served from a local folder store (development), or a
    302 to its presigned store URL or ``MEDIA_URL`` (the bytes never pass
    through the web then).

    Only ``derivatives/`` is served: originals keep the camera's metadata.
    Paths that leave the folder give 404. Derivative names carry a random
    token, so they cannot be guessed from ids.
    """
    prefix, _, rest = path.partition("/")
    if prefix != DERIVATIVES or not rest:
        abort(404)
    try:
        check_key(path)
    except ValueError:
        abort(404)
    store = get_store()
    if isinstance(store, LocalStore) and not current_app.config["MEDIA_URL"]:
        return send_from_directory(store.root / DERIVATIVES, rest, max_age=3600)
    return redirect(services.media_url(path), code=302)


@bp.app_errorhandler(StoreUnavailable)
def store_unavailable(exc: StoreUnavailable) -> tuple[Response | str, int]:
    """The store is down while a file is being stored: a page that says so (502,
    the store being the upstream that failed; JSON for JSON clients). The upload
    wrote no row and left no object, so trying again later is safe."""
    current_app.logger.warning("store unavailable: %s", exc)
    return error_response(502, "Photos cannot be stored right now, so nothing was saved. "
                               "Please try again in a few minutes.", "store_unavailable")


@bp.post("/account/avatar")
@login_required
@upload_limit
def avatar() -> Response | tuple[str | Response, int]:
    """Set a new avatar: field ``photo`` + ``csrf_token``, posted by the account page.

    On success: 303 back to ``/account`` (the avatar appears once the worker is
    done). On a refused file: the avatar form re-rendered with the reason, status
    400 (a JSON error when the client asks for JSON). Over ``UPLOAD_RATE_LIMIT``
    (shared with ``POST /uploads``): 429, nothing stored or published.
    """
    form = PhotoForm()
    if _accept(form, "avatar") is not None:
        flash("Your new avatar is being prepared; it appears here in a moment.", "info")
        return redirect(url_for("account.account"), code=303)
    if wants_json():
        return error_response(400, _first_error(form), "invalid_upload")
    return render_template("uploads/avatar.html", avatar_errors=[_first_error(form)]), 400


@bp.app_context_processor
def _avatar_helpers() -> dict[str, object]:
    """``avatar_for(user)`` for ``templates/uploads/_avatar.html`` on any page."""
    return {"avatar_for": services.avatar_for}
