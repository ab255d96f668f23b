"""The audit page: the records the user may read, filtered, paged, and as a CSV download."""

from flask import Blueprint, Response, render_template, request, stream_with_context
from flask_login import current_user, login_required

from webapp.audit import export, queries
from webapp.audit.forms import KNOWN_ACTIONS, KNOWN_OBJECT_TYPES, AuditFilterForm
from webapp.models import AuditEvent
from webapp.models.types import utcnow
from webapp.pagination import paginate

bp = Blueprint("audit", __name__, url_prefix="/audit")


@bp.before_request
@login_required
def _signed_in():
    """The audit trail needs a signed-in user."""


def _filters():
    form = AuditFilterForm(formdata=request.args)
    return form, form.valid_values()


@bp.route("/")
def list():
    """The audit records the user may read, newest first, with the filters in the URL."""
    form, filters = _filters()
    page = paginate(queries.filtered(current_user, filters), queries.AUDIT_SORTS, "at", "desc", per_page=50,
                    tiebreak=AuditEvent.id.desc())
    args = {name: request.args[name] for name in form._fields if request.args.get(name)}
    context = dict(page=page, form=form, args=args, actions=KNOWN_ACTIONS, object_types=KNOWN_OBJECT_TYPES)
    if request.htmx and request.htmx.target == "audit-table":
        return render_template("audit/_table.html", **context)
    return render_template("audit/list.html", **context)


@bp.route("/export.csv")
def export_csv():
    """The filtered records as a CSV file, streamed as it is read."""
    _, filters = _filters()
    lines = export.csv_lines(queries.filtered(current_user, filters))
    name = f"audit-{utcnow():%Y%m%d-%H%M}.csv"
    return Response(stream_with_context(lines), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
