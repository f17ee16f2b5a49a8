"""Pages that belong to no feature: the home page."""
from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("main", __name__)


@bp.get("/")
def index() -> str:
    """Home page: what Onboard is, and links to sign up or log in."""
    return render_template("index.html")
