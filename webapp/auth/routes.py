import re
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.urls import iri_to_uri

from webapp.accounts import authenticate
from webapp.auth import sessions, throttle
from webapp.auth.forms import LoginForm
from webapp.extensions import db
from webapp.models import User
from webapp.models.audit import record
from webapp.models.types import utcnow

bp = Blueprint("auth", __name__)

WRONG = "Unknown user name or wrong password."
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a plain path on this site, or the dashboard."""
    # An open redirect would let a link take a signed-in admin anywhere; a control character
    # (CR/LF) would end up in the Location header.
    if (target and target.startswith("/") and not target.startswith("//") and "\\" not in target
            and not _CONTROL.search(target) and not urlsplit(target).netloc
            and urlsplit(target).path != url_for("auth.logout")):  # a POST-only page: a GET is a 405
        return iri_to_uri(target)  # spaces and non-ASCII letters written as a URL
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in form."""
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    if not form.validate_on_submit():
        return _form_page(form)
    username = form.username.data.strip()
    lock = throttle.sign_in_attempt(username)
    if lock is not None:
        message, seconds = lock
        form.password.errors.append(message)
        return _form_page(form, 429, {"Retry-After": str(seconds)})
    user = authenticate(username, form.password.data)
    if user is None:
        _record_failure(username)
        form.password.errors.append(WRONG)
        return _form_page(form)
    throttle.sign_in_succeeded(username)
    sessions.sign_in(user)
    user.last_login_at = utcnow()
    record("login", "user", user, actor=user, object_name=user.username)
    db.session.commit()
    return redirect(_safe_next(request.args.get("next")))


def _form_page(form, status=None, headers=None):
    return render_template("auth/login.html", form=form), status or (400 if form.errors else 200), headers or {}


def _record_failure(username: str) -> None:
    user_id = db.session.scalar(select(User.id).where(User.username == username))
    event = record("login_failed", "user", actor=None, object_name=username, message=f"from {request.remote_addr}")
    event.object_id, event.actor_name = user_id, "anonymous"
    db.session.commit()


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign out (ending the session on the server) and return to the sign-in page."""
    sessions.sign_out()
    flash("You are signed out.")
    return redirect(url_for("auth.login"))
