from flask import Blueprint, render_template
from flask_login import login_required

bp = Blueprint("audit", __name__, url_prefix="/audit")


@bp.before_request
@login_required
def _signed_in():
    """The audit trail needs a signed-in user."""


@bp.route("/")
def list():
    """The audit records the user may read."""
    return render_template("audit/list.html")
