from flask import Blueprint, render_template
from flask_login import login_required

bp = Blueprint("executions", __name__, url_prefix="/executions")


@bp.before_request
@login_required
def _signed_in():
    """Every executions page needs a signed-in user."""


@bp.route("/")
def list():
    """Runs the user may see, newest start first."""
    return render_template("executions/list.html")
