"""The archive of exported files (S0): every file an export wrote that the user may see, kept
when its job is removed or deleted and when its run is purged from history; downloads go
through the runs' file route, which asks the same permissions."""
from __future__ import annotations  # the list view is named `list`

from flask import Blueprint, render_template, request
from flask_login import current_user, login_required

from webapp.archive import queries
from webapp.models import RunFile
from webapp.models.clinical import FORMAT_LABELS
from webapp.pagination import paginate

bp = Blueprint("archive", __name__, url_prefix="/archive")


@bp.before_request
@login_required
def _signed_in():
    """The archive needs a signed-in user."""


@bp.route("/")
def list():
    """Exported files the user may see, newest first: found, filtered, sorted, paged, each with its download link."""
    filters = queries.Filters.from_args(request.args)
    page = paginate(queries.files_query(current_user, filters), queries.SORTS, "created", default_direction="desc",
                    tiebreak=RunFile.id.desc())
    context = {"page": page, "filters": filters, "args": filters.args(),
               "format_labels": {f.value: label for f, label in FORMAT_LABELS.items()}}
    if request.htmx and request.htmx.target == "archive-table":
        return render_template("archive/_table.html", **context)
    return render_template("archive/list.html", choices=queries.choices(current_user), **context)
