"""Every run the user may see, across jobs (S4 "all jobs"): filter, expand, audit, retry, cancel."""
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from markupsafe import Markup

from webapp.auth.permissions import get_run_or_404
from webapp.executions import actions, queries
from webapp.forms import ConfirmForm
from webapp.jobs.editing import parse_id
from webapp.models import Run
from webapp.pagination import paginate

bp = Blueprint("executions", __name__, url_prefix="/executions")


@bp.before_request
@login_required
def _signed_in():
    """Every executions page needs a signed-in user."""


@bp.route("/")
def list():
    """Runs the user may see, newest first, filtered as the URL says."""
    filters = queries.parse_filters(request.args)
    # The cap makes paginate's count stop at COUNT_CAP + 1 rows; its own LIMIT gives way to the page's.
    query = queries.executions_query(current_user, filters)
    sorts, refused = queries.sorts_for(query, request.args.get("sort", "id"))
    if refused:
        filters.problems.append(refused)
    page = paginate(query.limit(queries.COUNT_CAP + 1), sorts, "id", default_direction="desc",
                    tiebreak=Run.id.desc())
    context = dict(page=page, filters=filters, capped=page.total > queries.COUNT_CAP, cap=queries.COUNT_CAP,
                   form=ConfirmForm())
    if request.htmx and request.htmx.target == "executions-table":
        # The address bar gets the filters that apply, not every empty field of the form.
        return render_template("executions/_table.html", **context), {"HX-Push-Url": _canonical(page, filters)}
    return render_template("executions/list.html", choices=queries.filter_choices(current_user), **context)


@bp.route("/<int:run_id>/details")
def details(run_id):
    """A run's statistics, counts, arguments and files: the row of the list, expanded."""
    run = get_run_or_404(current_user, run_id)
    return render_template("executions/_details.html", run=run, retries=actions.retries_of(current_user, run))


@bp.route("/<int:run_id>/audit")
def audit(run_id):
    """The audit records about one run that the user may read (a popup; a page without JavaScript)."""
    run = get_run_or_404(current_user, run_id)
    events = actions.run_audit(current_user, run)
    template = "executions/_audit.html" if request.htmx else "executions/audit.html"
    return render_template(template, run=run, events=events)


@bp.route("/<int:run_id>/retry", methods=["POST"])
def retry(run_id):
    """Run a failed or cancelled run's job again with the same arguments, as a retry of it."""
    run = get_run_or_404(current_user, run_id)
    try:
        new = actions.retry_run(run, current_user)
    except actions.NotRetried as exc:
        flash(str(exc), "error")
    else:
        link = url_for("runs.detail", run_id=new.id)
        flash(Markup('Run <a href="{}">#{}</a> of {} is queued as a retry of #{}.').format(
            link, new.id, run.job.name, run.id), "success")
    return redirect(_back())


@bp.route("/cancel", methods=["POST"])
def cancel():
    """Cancel the ticked waiting runs; say what happened to each."""
    ids = [i for i in (parse_id(value) for value in request.form.getlist("run_id")) if i is not None]
    if not ids:
        flash("Tick at least one waiting run to cancel.", "error")
        return redirect(_back())
    results = actions.cancel_runs(current_user, ids)
    if all(result.outcome == "not_found" for result in results):
        abort(404, description="No such run.")
    done = sum(result.outcome == "cancelled" for result in results)
    flash(f"{done} of {len(results)} run(s) cancelled: " + "; ".join(r.sentence for r in results) + ".",
          "success" if done == len(results) else "error")
    return redirect(_back())


def _canonical(page, filters) -> str:
    args = filters.as_args()
    if (page.sort, page.direction) != ("id", "desc"):
        args.update(sort=page.sort, dir=page.direction)
    if page.page > 1:
        args["page"] = page.page
    return url_for("executions.list", **args)


def _back() -> str:
    """The list the user acted from (with its filters), or the plain list."""
    referrer = request.referrer or ""
    if referrer.startswith(request.host_url + "executions/"):
        return referrer
    return url_for("executions.list")
