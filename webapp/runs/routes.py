from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template, request,
                   send_file, stream_with_context, url_for)
from flask_login import current_user, login_required
from redis.exceptions import RedisError

from webapp.auth.permissions import get_file_or_404, get_run_or_404
from webapp.execution import dispatch, livelog
from webapp.extensions import redis_client
from webapp.forms import ConfirmForm
from webapp.jobs.editing import parse_id
from webapp.runs import logs, present, reads, stream, textlog
from webapp.runs.files import media_type, open_run_file
from webapp.runs.waiting import waiting_for

bp = Blueprint("runs", __name__, url_prefix="/runs")
bp.record_once(present.init_app)

# The HX-Target of a "show earlier lines" item, on the run page and in the popup.
EARLIER_TARGETS = ("log-earlier", "popup-log-earlier")
LOG_VIEWS = ("log-view", "popup-log-view")  # ... and of the filtered log


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


def _run_view(run) -> dict:
    """What the run's status panel shows, on its page and in the popup."""
    percent, message = _live_progress(run)
    return {"run": run, "percent": percent, "message": message, "waiting": waiting_for(run),
            "traceback": logs.traceback_of(run), "show_paths": present.shows_server_paths(current_user),
            "form": ConfirmForm(), "grace": current_app.config["CANCEL_GRACE_SECONDS"]}


def _final_log(run, limit):
    """The page of a finished run's log the query string asks for (None while the run is live)."""
    if not run.is_final:
        return None
    return logs.log_page(run.id, parse_id(request.args.get("before")), limit=limit,
                         shown=logs.LogFilter.from_args(request.args))


def _log_part(run, endpoint, limit):
    """The part of a finished run's log an HTMX request replaces: earlier lines, or the filtered
    log; None for anything else (the whole page or popup)."""
    if not (run.is_final and request.htmx and request.htmx.target in (*EARLIER_TARGETS, *LOG_VIEWS)):
        return None
    view = {"run": run, "log": _final_log(run, limit), "endpoint": endpoint,
            "show_paths": present.shows_server_paths(current_user)}
    if request.htmx.target in EARLIER_TARGETS:
        return render_template("runs/_log_lines.html", prepend=True, **view)
    return render_template("runs/_log_view.html", **view)


def _open(run, endpoint, template, limit):
    """The run's page or popup (or the part of its log HTMX asks for). Opening it marks the log
    read for the user, first, so that the commit does not expire the lines read next."""
    part = _log_part(run, endpoint, limit)
    if part is not None:
        return part
    reads.mark_read(current_user, run)
    return render_template(template, log=_final_log(run, limit), endpoint=endpoint, **_run_view(run))


@bp.route("/<int:run_id>")
def detail(run_id):
    """One run: status, progress and its log, streamed live while it runs, a page of lines once it ended."""
    return _open(get_run_or_404(current_user, run_id), "runs.detail", "runs/detail.html", logs.PAGE_LINES)


@bp.route("/<int:run_id>/popup")
def popup(run_id):
    """The live log popup's content (an HTMX fragment): the log streamed while the run is in
    progress, its last lines with earlier ones on demand once it ended. Opening it marks the log
    read for the user. Without HTMX: the run's page."""
    run = get_run_or_404(current_user, run_id)
    if not request.htmx:
        return redirect(url_for("runs.detail", run_id=run.id, **logs.LogFilter.from_args(request.args).query_args()))
    return _open(run, "runs.popup", "runs/_popup.html", logs.POPUP_LINES)


@bp.route("/<int:run_id>/status")
def status(run_id):
    """The run's status panel (HTMX refreshes it when the live log says the status changed)."""
    run = get_run_or_404(current_user, run_id)
    if run.is_final:  # the reader watched the log to its end
        reads.mark_read(current_user, run)
    return render_template("runs/_status.html", **_run_view(run))


@bp.route("/<int:run_id>/stream")
def live(run_id):
    """Server-sent events: the run's log lines and progress as they happen."""
    run = get_run_or_404(current_user, run_id)
    resume = stream.resume_from(request.headers.get("Last-Event-ID"))  # a reconnecting browser
    body = stream_with_context(stream.events(run.id, redis_client.conn, resume))
    return Response(body, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@bp.route("/<int:run_id>/log.txt")
def log_download(run_id):
    """The run's whole log as plain text (run-<id>.log), streamed: every line, however many."""
    run = get_run_or_404(current_user, run_id)
    body = textlog.lines_of(run, present.shows_server_paths(current_user))
    return Response(stream_with_context(body), mimetype="text/plain",
                    headers={"Content-Disposition": f'attachment; filename="run-{run.id}.log"',
                             "Cache-Control": "no-store"})


@bp.route("/<int:run_id>/cancel", methods=["POST"])
def cancel(run_id):
    """Cancel the run: at once if it waits, by asking the job to stop if it runs."""
    run = get_run_or_404(current_user, run_id)
    outcome = dispatch.cancel_run(run, current_user)
    # The run's page says it is cancelled or asked to stop, for as long as that is true; a flash
    # would outlive it. Only an answer that stays true is flashed.
    if outcome == "finished":
        flash("The run had already ended when the cancel arrived.", "success")
    return redirect(url_for("runs.detail", run_id=run.id))


@bp.route("/files/<int:file_id>")
def download(file_id):
    """Download an output file of a run the user may see."""
    file = get_file_or_404(current_user, file_id)
    handle = open_run_file(file)
    if handle is None:
        abort(404, description="The file is no longer on disk.")
    return send_file(handle, mimetype=media_type(file), as_attachment=True, download_name=file.name)
