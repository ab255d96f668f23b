"""Signed-in browsers, decided on the server.

The session cookie holds the user's id (Flask-Login's) and a random token whose hash names a
`UserSession` row; a browser is signed in only while that row is live. So signing out, an idle
spell, a password change or a deactivation ends the session, whatever copy of the cookie anyone
kept. Flask-Login's remember-me cookie is never issued, and a browser presenting one is not
signed in by it: the user loader wants the token, which only a sign-in puts in the session.
"""
from datetime import timedelta

from flask import current_app, g, request, session
from flask_login import current_user, login_user, logout_user

from webapp.extensions import db
from webapp.models import User, UserSession

TOKEN_KEY = "session_token"


def _idle() -> timedelta:
    return timedelta(minutes=current_app.config["SESSION_IDLE_MINUTES"])


def sign_in(user: User) -> None:
    """Start a session for the user, in a cookie session emptied first: nothing from before the
    sign-in carries over, and Flask-WTF makes a new CSRF token."""
    _empty_cookie_session()
    UserSession.forget_dead_of(user, _idle())
    _, token = UserSession.open(user, request.remote_addr or "")
    login_user(user)
    session[TOKEN_KEY] = token


def sign_out() -> None:
    """End this browser's session on the server, then forget the cookie session."""
    token = session.get(TOKEN_KEY)
    if token:
        UserSession.end_token(token)
        db.session.commit()
    logout_user()
    _empty_cookie_session()


def _empty_cookie_session() -> None:
    session.clear()
    # Flask-WTF caches the signed CSRF token in g; it belongs to the session just emptied.
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


def load_user(user_id: str) -> User | None:
    """Flask-Login's user loader: the user of a live session of this cookie, or nobody."""
    token = session.get(TOKEN_KEY)
    if not token or not str(user_id).isdigit():
        return None
    row = UserSession.live(token, _idle())
    if row is None or row.user_id != int(user_id) or not row.user.can_sign_in:
        return None
    g.session_touched = row.touch()
    return row.user


def load_before_the_view() -> None:
    """Load the signed-in user before any view runs, so that keeping the session alive (once a
    minute) is committed on its own and never with half of a view's work."""
    if request.endpoint == "static" or TOKEN_KEY not in session:
        return
    if current_user.is_authenticated and g.pop("session_touched", False):
        db.session.commit()
