from flask import Blueprint, render_template
from flask_login import login_required

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")


@bp.before_request
@login_required
def _signed_in():
    """The dashboard needs a signed-in user."""


@bp.route("/")
def index():
    """Runs in progress, counts of the last 24 hours, next fires and recent failures."""
    return render_template("dashboard/index.html")
