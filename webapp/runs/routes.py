from flask import (Blueprint, Response, abort, flash, redirect, render_template, request,
                   send_file, stream_with_context, url_for)
from flask_login import current_user, login_required
from redis.exceptions import RedisError

from webapp.auth.permissions import get_file_or_404, get_run_or_404
from webapp.execution import dispatch, livelog
from webapp.extensions import redis_client
from webapp.forms import ConfirmForm
from webapp.jobs.editing import parse_id
from webapp.runs import logs, stream
from webapp.runs.files import open_run_file

bp = Blueprint("runs", __name__, url_prefix="/runs")


@bp.before_request
@login_required
def _signed_in():
    """Every run page needs a signed-in user."""


def _live_progress(run):
    if run.is_final:
        return run.progress, run.progress_message
    try:
        state = livelog.progress(redis_client.conn, run.id)
    except RedisError:  # the page still shows what the database knows
        state = {}
    return int(state.get("progress", run.progress)), state.get("message", run.progress_message)


@bp.route("/<int:run_id>")
def detail(run_id):
    """One run: status, progress and its log, streamed live while it runs, a page of lines once it ended."""
    run = get_run_or_404(current_user, run_id)
    log = logs.log_page(run.id, parse_id(request.args.get("before"))) if run.is_final else None
    if log is not None and request.htmx and request.htmx.target == "log-earlier":
        return render_template("runs/_log_lines.html", run=run, log=log, prepend=True)
    percent, message = _live_progress(run)
    return render_template("runs/detail.html", run=run, percent=percent, message=message, log=log,
                           form=ConfirmForm())


@bp.route("/<int:run_id>/status")
def status(run_id):
    """The run's status panel (HTMX refreshes it when the live log ends)."""
    run = get_run_or_404(current_user, run_id)
    percent, message = _live_progress(run)
    return render_template("runs/_status.html", run=run, percent=percent, message=message, form=ConfirmForm())


@bp.route("/<int:run_id>/stream")
def live(run_id):
    """Server-sent events: the run's log lines and progress as they happen."""
    run = get_run_or_404(current_user, run_id)
    resume = stream.resume_from(request.headers.get("Last-Event-ID"))  # a reconnecting browser
    body = stream_with_context(stream.events(run.id, redis_client.conn, resume))
    return Response(body, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@bp.route("/<int:run_id>/cancel", methods=["POST"])
def cancel(run_id):
    """Cancel the run: at once if it waits, by asking the job to stop if it runs."""
    run = get_run_or_404(current_user, run_id)
    outcome = dispatch.cancel_run(run, current_user)
    flash({"cancelled": "The run is cancelled.",
           "stopping": "The run is asked to stop; it will be stopped if it does not.",
           "finished": "The run had already finished."}[outcome], "success")
    return redirect(url_for("runs.detail", run_id=run.id))


@bp.route("/files/<int:file_id>")
def download(file_id):
    """Download an output file of a run the user may see."""
    file = get_file_or_404(current_user, file_id)
    handle = open_run_file(file)
    if handle is None:
        abort(404, description="The file is no longer on disk.")
    return send_file(handle, mimetype=file.content_type, as_attachment=True, download_name=file.name)
