from flask import Blueprint, abort, render_template
from flask_login import current_user, login_required

from webapp.auth.permissions import can_administer

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@login_required
def _superadmins_only():
    """Admin pages are for superadmins; to anyone else they do not exist."""
    if not can_administer(current_user):
        abort(404)


@bp.route("/users")
def users():
    """Every user: role, domain, supervised domains, state, API tokens."""
    return render_template("admin/users.html")
