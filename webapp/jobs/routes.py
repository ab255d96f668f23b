"""The jobs list: find, sort, filter and act on many jobs at once (the job page is in page.py)."""
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from webapp import presenters
from webapp.auth.permissions import jobs_query
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.forms import ConfirmForm
from webapp.jobs import editing, queries
from webapp.models import Job, Trigger
from webapp.pagination import paginate

bp = Blueprint("jobs", __name__, url_prefix="/jobs")


@bp.before_request
@login_required
def _signed_in():
    """Every jobs page needs a signed-in user."""


@bp.context_processor
def _presenters():
    return {"present": presenters}


@bp.route("/")
def list():
    """The jobs the user may see, with their latest status and fire times."""
    find = request.args.get("q", "").strip()
    page = paginate(queries.job_list_query(current_user, find), queries.JOB_SORTS, "name", tiebreak=Job.id)
    latest = queries.latest_runs([job.id for job in page.items])
    context = dict(page=page, latest=latest, find=find, form=ConfirmForm())
    if request.htmx and request.htmx.target == "jobs-table":
        return render_template("jobs/_table.html", **context)
    return render_template("jobs/list.html", **context)


@bp.route("/run", methods=["POST"])
def run_selected():
    """Run now every job ticked on the list."""
    ids = {editing.parse_id(i) for i in request.form.getlist("job_id")} - {None}
    jobs = db.session.scalars(jobs_query(current_user).where(Job.id.in_(ids))).all() if ids else []
    started, refused = dispatch.request_runs(jobs, trigger=Trigger.HAND, user=current_user)
    if not jobs:
        flash("Tick at least one job to run.", "error")
    if started:
        flash(f"Queued {len(started)} run(s): " + ", ".join(f"#{i}" for i in started) + ".", "success")
    for message in refused:
        flash(message, "error")
    return redirect(request.referrer if request.referrer and request.referrer.startswith(request.host_url)
                    else url_for("jobs.list"))
