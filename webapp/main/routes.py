from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.exceptions import HTTPException

from webapp.main import health

bp = Blueprint("main", __name__)


@bp.route("/")
def index():
    """The console starts at the dashboard."""
    return redirect(url_for("dashboard.index"))


@bp.route("/healthz")
def healthz():
    """JSON: the status, 503 when the database or Redis is down; signed-in users also see each part
    (database, Redis, workers by name, scheduler), which is no business of anonymous callers."""
    report, healthy = health.check()
    status = {"status": "ok" if healthy else "unavailable"}
    return jsonify({**report, **status} if current_user.is_authenticated else status), 200 if healthy else 503


def register_error_handlers(app):
    @app.errorhandler(HTTPException)
    def http_error(exc):
        if request.path.startswith("/api"):
            body = {"code": exc.code, "status": exc.name, "message": exc.description}
            messages = (getattr(exc, "data", None) or {}).get("messages")  # webargs validation
            if messages:
                body["errors"] = messages
                body["message"] = "Invalid input: " + _flatten(messages)
            headers = _headers_of(exc)
            if exc.code == 401:
                headers["WWW-Authenticate"] = "Bearer"
            return jsonify(body), exc.code, headers
        return render_template("errors/error.html", error=exc), exc.code, _headers_of(exc)


def _headers_of(exc) -> dict:
    """The exception's own headers (Allow on a 405, Retry-After on a 503), not its Content-Type."""
    return {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}


def _flatten(messages) -> str:
    """{'query': {'fromDate': ['bad']}} -> "fromDate: bad" """
    parts = []
    for location in messages.values():
        for field, problems in (location.items() if isinstance(location, dict) else [("", location)]):
            text = " ".join(problems) if isinstance(problems, list) else str(problems)
            parts.append(f"{field}: {text}" if field and field != "_schema" else text)
    return "; ".join(parts)
