import re
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.urls import iri_to_uri

from webapp.auth.forms import LoginForm
from webapp.extensions import db
from webapp.models import User
from webapp.models.audit import record
from webapp.models.types import utcnow

bp = Blueprint("auth", __name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def authenticate(username: str, password: str) -> User | None:
    """The user these credentials sign in, or None (system accounts never sign in to the UI)."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None or not user.check_password(password) or not user.can_sign_in:
        return None
    return user


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a plain path on this site, or the jobs list."""
    # An open redirect would let a link take a signed-in admin anywhere; a control character
    # (CR/LF) would end up in the Location header.
    if (target and target.startswith("/") and not target.startswith("//") and "\\" not in target
            and not _CONTROL.search(target) and not urlsplit(target).netloc):
        return iri_to_uri(target)  # spaces and non-ASCII letters written as a URL
    return url_for("jobs.list")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in form."""
    if current_user.is_authenticated:
        return redirect(url_for("jobs.list"))
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.username.data.strip(), form.password.data)
        if user is None:
            form.password.errors.append("Unknown user name or wrong password.")
        else:
            login_user(user)
            user.last_login_at = utcnow()
            record("login", "user", user, actor=user, object_name=user.username)
            db.session.commit()
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form), 200 if not form.errors else 400


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign out and return to the sign-in page."""
    logout_user()
    flash("You are signed out.")
    return redirect(url_for("auth.login"))
