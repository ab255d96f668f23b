"""The queues page (S0, S4): each queue's running, waiting and planned entries, the workers,
and cancel per entry. Pause, resume and clear are not here yet."""
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from webapp.auth.permissions import get_job_or_404, get_run_or_404
from webapp.forms import ConfirmForm
from webapp.queues import actions, queries

bp = Blueprint("queues", __name__, url_prefix="/queues")


@bp.before_request
@login_required
def _signed_in():
    """Every queues page needs a signed-in user."""


def _workers():
    try:
        return queries.workers(), False
    except queries.RedisDown:
        return [], True


@bp.route("/")
def index():
    """Every queue's panel; the list named by ?queue=&list= is sorted, filtered and paged as the URL says."""
    if request.htmx and request.htmx.target and request.htmx.target.startswith("q-"):
        return _list_fragment(request.args.get("queue", ""), request.args.get("list", ""))
    panels = queries.panels(current_user, request.args)
    workers, redis_down = _workers()
    served = {name for worker in workers if not worker.lost for name in worker.queues}
    return render_template("queues/index.html", panels=panels, workers=workers, workers_redis_down=redis_down,
                           served=served, form=ConfirmForm())


def _list_fragment(queue, kind):
    """One list of one queue: what its sort, filter and pager links swap in, and what the page
    polls every few seconds for the running and waiting lists (the target names the list)."""
    try:
        view = queries.one_list(current_user, queue[:100], kind[:20], request.args)
    except queries.UnknownQueue:
        abort(404, description="No such queue.")
    return render_template("queues/_list.html", view=view, form=ConfirmForm())


@bp.route("/workers")
def workers():
    """The workers panel alone (polled by the page)."""
    rows, redis_down = _workers()
    return render_template("queues/_workers.html", workers=rows, workers_redis_down=redis_down)


@bp.route("/runs/<int:run_id>/cancel", methods=["POST"])
def cancel_run(run_id):
    """Cancel a running or waiting run; say what happened if it started or ended meanwhile."""
    run = get_run_or_404(current_user, run_id)
    return _said(*actions.cancel_entry(run, current_user, request.form.get("was", "")))


@bp.route("/jobs/<int:job_id>/skip", methods=["POST"])
def skip(job_id):
    """Skip the job's next planned occurrence (the one the page showed), that one only."""
    job = get_job_or_404(current_user, job_id)
    return _said(*actions.skip_entry(job, current_user, request.form.get("at", "")))


def _said(message: str, ok: bool):
    """Back to the list the user acted from, with what happened."""
    flash(message, "success" if ok else "error")
    return redirect(_back())


def _back() -> str:
    referrer = request.referrer or ""
    if referrer.startswith(request.host_url + "queues/"):
        return referrer
    return url_for("queues.index")
