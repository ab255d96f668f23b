"""The queues page (S0, S4): each queue's state, running, waiting and planned entries, the
workers, cancel per entry; pause, resume, clear and pause on failure for those who steer queues."""
from urllib.parse import urlsplit, urlunsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from webapp.auth.permissions import can_manage_queues, get_job_or_404, get_run_or_404
from webapp.execution import queues as engine
from webapp.forms import ConfirmForm
from webapp.queues import actions, queries

bp = Blueprint("queues", __name__, url_prefix="/queues")


@bp.before_request
@login_required
def _signed_in():
    """Every queues page needs a signed-in user."""


def _workers():
    try:
        return queries.workers_for(current_user), False
    except queries.RedisDown:
        return [], True


@bp.route("/")
def index():
    """Every queue's panel; the list named by ?queue=&list= is sorted, filtered and paged as the URL says."""
    target = (request.htmx.target or "") if request.htmx else ""
    if target.startswith("q-"):
        return _list_fragment(request.args.get("queue", ""), request.args.get("list", ""))
    if target.startswith("qs-"):
        return _state_fragment(request.args.get("queue", ""))
    return _page()


def _page(control: dict | None = None, status: int = 200):
    """The whole page; `control` puts a refused pause form back with its reason and the problem."""
    panels = queries.panels(current_user, request.args)
    workers, redis_down = _workers()
    served = {name for worker in workers if not worker.lost for name in worker.queues}
    return render_template("queues/index.html", panels=panels, workers=workers, workers_redis_down=redis_down,
                           served=served, form=ConfirmForm(), control=control or {}), status


def _list_fragment(queue, kind):
    """One list of one queue: what its sort, filter and pager links swap in, and what the page
    polls every few seconds for the running and waiting lists (the target names the list)."""
    try:
        view = queries.one_list(current_user, queue[:100], kind[:20], request.args)
    except queries.UnknownQueue:
        abort(404, description="No such queue.")
    return render_template("queues/_list.html", view=view, form=ConfirmForm())


def _state_fragment(queue):
    """A panel's head: the queue's state and its controls (polled, so a pause on failure shows)."""
    if queue not in queries.visible_queues(current_user):
        abort(404, description="No such queue.")
    return render_template("queues/_state.html", st=queries.statuses(current_user, [queue])[queue], control={})


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


@bp.route("/<string(maxlength=64):name>/pause", methods=["POST"])
def pause(name):
    """Pause the queue: runs in progress finish, nothing new starts until it is resumed."""
    queue = _steered(name)
    reason = request.form.get("reason", "")
    problem = actions.reason_problem(reason)
    if problem:
        return _page({"queue": queue, "reason": reason, "problem": problem}, 400)
    return _told(engine.pause(queue, current_user, reason), queue)


@bp.route("/<string(maxlength=64):name>/resume", methods=["POST"])
def resume(name):
    """Resume the queue: its waiting runs start in the order they were queued."""
    queue = _steered(name)
    return _told(engine.resume(queue, current_user), queue)


@bp.route("/<string(maxlength=64):name>/clear", methods=["POST"])
def clear(name):
    """Cancel every waiting run of the queue; runs in progress go on."""
    queue = _steered(name)
    return _told(engine.clear(queue, current_user), queue)


@bp.route("/<string(maxlength=64):name>/pause-on-failure", methods=["POST"])
def pause_on_failure(name):
    """Turn the queue's pause on failure on or off."""
    queue = _steered(name)
    on = actions.on_or_off(request.form.get("on", ""))
    if on is None:
        flash("Pause on failure is either on or off: nothing changed.", "error")
        return redirect(_back(queue))
    return _told(engine.set_pause_on_failure(queue, on, current_user), queue)


def _steered(name: str) -> str:
    """The queue a pause, resume or clear names. Those actions are for the people who may steer
    queues (permissions.can_manage_queues): to anyone else they do not exist, as for a queue of
    no such name."""
    if not can_manage_queues(current_user):
        abort(404)
    if name not in queries.visible_queues(current_user):
        abort(404, description=str(engine.UnknownQueue(name)))
    return name


def _told(outcome, queue: str):
    """Back to the page with what the engine did (a no-op, such as a second pause, is no error)."""
    flash(outcome.message, "success" if outcome.changed else "info")
    return redirect(_back(queue))


def _said(message: str, ok: bool):
    """Back to the list the user acted from, with what happened."""
    flash(message, "success" if ok else "error")
    return redirect(_back())


def _back(queue: str = "") -> str:
    """The queues page as the user had it (sort, filters, pages), at the queue's panel if named; or
    the envelopes page, which steers the processing queue too, as the user had it."""
    referrer, here = urlsplit(request.referrer or ""), urlsplit(request.host_url)
    page = url_for("queues.index")
    if (referrer.scheme, referrer.netloc) == (here.scheme, here.netloc) and referrer.path == url_for("envelopes.index"):
        return urlunsplit(("", "", referrer.path, referrer.query, ""))
    if (referrer.scheme, referrer.netloc, referrer.path) == (here.scheme, here.netloc, page):
        page = urlunsplit(("", "", page, referrer.query, ""))
    return page + (f"#queue-{queue}" if queue else "")
