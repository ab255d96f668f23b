"""The hidden support page (SPEC 8): script jobs listed, added, edited, archived, restored, run,
their script versions and the difference between two. To everyone `can_use_support` refuses,
signed out included, every address here answers 404: nothing tells the page exists."""
from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from werkzeug.exceptions import NotFound

from webapp.auth.permissions import can_use_support
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.forms import ConfirmForm
from webapp.guards import max_request_bytes
from webapp.jobs.queries import latest_runs
from webapp.jobtypes import registry
from webapp.models import Job, Run, Trigger
from webapp.models.scripts import ScriptVersion
from webapp.pagination import paginate
from webapp.support import scripts
from webapp.support.forms import ScriptForm

bp = Blueprint("support", __name__, url_prefix="/support")

SORTS = {"name": Job.name, "state": Job.state, "next": Job.next_fire_at, "id": Job.id}
RUNS_SHOWN = 20  # the latest runs the job page lists (all of them: Executions)
# A form body holds the script percent-encoded: up to three bytes a byte, and the other fields.
# A script of up to four times the limit (a paste of the wrong file) is read, so it is told next to
# the field rather than on an error page. Only the support roles get this far (see below).
FORM_BYTES = 3 * 4 * scripts.SCRIPT_MAX_BYTES + 512 * 1024


@bp.url_value_preprocessor
def _support_people_only(endpoint, values):
    """The one check of the area, made before any other: Flask runs URL value preprocessors
    before every before_request function (the input guard, CSRF). For anyone else the request
    becomes one that matched no address, so each answer is the one an address that does not
    exist gets: 404, or 413 for a body over the site's limit, 400 for a control character. A
    CSRF refusal (400) or these forms' larger body limit would otherwise tell the page exists."""
    if not current_user.is_authenticated or not can_use_support(current_user):
        request.url_rule, request.view_args = None, None
        request.routing_exception = NotFound()


@bp.context_processor
def _here():
    return {"here": "support"}


def _job_or_404(job_id: int) -> Job:
    job = scripts.get_script_job(job_id)
    if job is None:
        abort(404, description="No such script job.")
    return job


@bp.route("/")
def index():
    """Every script job: name, archived, run-as, poll interval, the script's MD5, last status,
    next fire time, Run now. One query each for the page, its MD5s and its latest runs."""
    query = scripts.scripts_query().options(joinedload(Job.run_as))
    page = paginate(query, SORTS, "name", tiebreak=Job.id)
    ids = [job.id for job in page.items]
    context = dict(page=page, md5s=ScriptVersion.current_md5s(ids), last_runs=latest_runs(ids), confirm=ConfirmForm())
    if request.htmx and request.htmx.target == "scripts-table" and not request.htmx.history_restore_request:
        return render_template("support/_table.html", **context)
    return render_template("support/list.html", **context)


@bp.route("/new", methods=["GET", "POST"])
@max_request_bytes(FORM_BYTES)
def new():
    """A new script job; a valid save puts it on its poll plan at once and opens its page."""
    form = _form(None)
    if _saving():
        try:
            job = scripts.create(current_user, form.script_input())
        except scripts.InvalidJob as exc:
            form.show_errors(exc.errors)
            return _render_form(form, None, refused=True), 400
        flash(f"Script job “{job.name}” is saved.", "success")
        return redirect(url_for("support.detail", job_id=job.id))
    return _render_form(form, None)


@bp.route("/<int:job_id>/edit", methods=["GET", "POST"])
@max_request_bytes(FORM_BYTES)
def edit(job_id):
    """Change a script job; a changed script is a new version. A save from a form opened before
    another save is refused (409) and keeps what was typed."""
    job = _job_or_404(job_id)
    form = _form(job)
    if _saving():
        try:
            changed = scripts.update(current_user, job, form.script_input())
        except scripts.InvalidJob as exc:
            form.show_errors(exc.errors)
            return _render_form(form, job, refused=True), 400
        except scripts.EditConflict as exc:
            db.session.refresh(job)
            form.version.data = str(job.version)  # saving again now is a choice made knowing the changes
            return _render_form(form, job, conflict=exc), 409
        if not changed:
            flash("Nothing was changed.", "info")
        elif "script" in changed:
            flash(f"Script job “{job.name}” is saved: script version {ScriptVersion.current(job.id).number}.",
                  "success")
        else:
            flash(f"Script job “{job.name}” is saved; the script is unchanged.", "success")
        return redirect(url_for("support.detail", job_id=job.id))
    return _render_form(form, job)


def _saving() -> bool:
    """A POST of the save button (not of the no-JavaScript "Add row" button)."""
    return request.method == "POST" and "add_row" not in request.form


def _form(job: Job | None) -> ScriptForm:
    """The form as posted, or as the job (or a new one) is now; with one more configuration row
    after "Add row", and a few blank ones on a page that opens."""
    posted = request.method == "POST"
    form = ScriptForm() if posted else ScriptForm(formdata=None)
    if not posted and job is not None:
        current = ScriptVersion.current(job.id)
        form.fill(job, current.script if current else "")
    form.setup(scripts.run_as_choices(), scripts.time_limit_max(), job)
    if posted and "add_row" in request.form:
        form.pad_rows(1 + sum(1 for entry in form.config.entries if entry.form.blank()))
    elif not posted:
        form.pad_rows()
    return form


def _render_form(form, job, refused=False, conflict=None):
    return render_template("support/form.html", form=form, job=job, refused=refused, conflict=conflict,
                           limits={"key": scripts.KEY_MAX, "value": scripts.VALUE_MAX})


@bp.route("/<int:job_id>")
def detail(job_id):
    """A script job: its settings, its latest runs (with the live log popup), its script
    versions and the difference between two, Run now, Edit, Archive or Restore."""
    job = _job_or_404(job_id)
    return render_template("support/detail.html", **_detail_context(job))


def _detail_context(job: Job, **extra) -> dict:
    history = scripts.versions(job.id)
    runs = db.session.scalars(select(Run).where(Run.job_id == job.id).order_by(Run.id.desc())
                              .limit(RUNS_SHOWN).options(joinedload(Run.requested_by))).all()
    compared = extra.pop("compared", None)
    if compared is None and len(history) > 1:
        compared = _compare(job, history[1].number, history[0].number)
    return dict(job=job, current=history[0] if history else None, versions=history, runs=runs,
                polling=any(not run.is_final for run in runs), confirm=ConfirmForm(),
                time_limit_setting=scripts.time_limit_max(), compared=compared or {}, **extra)


def _compare(job: Job, a, b) -> dict:
    """{diff, message, a, b} for the diff fragment: versions a and b of the job, as asked."""
    first, second = scripts.version_or_none(job.id, a), scripts.version_or_none(job.id, b)
    if first is None or second is None:
        missing = a if first is None else b
        shown = str(missing)[:20] if missing not in (None, "") else "—"
        return dict(a=a, b=b, message=f"This job has no script version {shown}: choose two of the listed versions.")
    return dict(a=first.number, b=second.number, diff=scripts.diff(first, second))


@bp.route("/<int:job_id>/diff")
def diff(job_id):
    """The difference between two script versions (?a=&b=): the fragment for HTMX, the job page
    with it otherwise (so the address works without JavaScript)."""
    job = _job_or_404(job_id)
    compared = _compare(job, request.args.get("a", ""), request.args.get("b", ""))
    status = 200 if "diff" in compared else 404
    if request.htmx and not request.htmx.history_restore_request:
        response = make_response(render_template("support/_diff.html", job=job, compared=compared))
    else:
        response = make_response(render_template("support/detail.html", **_detail_context(job, compared=compared)),
                                 status)
    response.vary.add("HX-Request")
    return response


@bp.route("/<int:job_id>/run", methods=["POST"])
def run_now(job_id):
    """Queue a run now (it waits behind one in progress) and show it, as the jobs page does."""
    job = _job_or_404(job_id)
    try:
        run = dispatch.request_run(job, trigger=Trigger.HAND, user=current_user)
    except (dispatch.NotRunnable, registry.InvalidArguments) as exc:
        flash(f"Not started: {exc}", "error")
        return redirect(url_for("support.detail", job_id=job.id))
    return redirect(url_for("runs.detail", run_id=run.id))


@bp.route("/<int:job_id>/archive", methods=["POST"])
def archive(job_id):
    """Take the script out of use: off its poll plan at once, still listed."""
    job = _job_or_404(job_id)
    return _act(job, scripts.archive, f"“{job.name}” is archived: no poller runs it.")


@bp.route("/<int:job_id>/restore", methods=["POST"])
def restore(job_id):
    """Put an archived script back on its poll interval, from now."""
    job = _job_or_404(job_id)
    return _act(job, scripts.restore, f"“{job.name}” is restored: it runs on its poll interval again.")


def _act(job, action, done):
    try:
        action(current_user, job)
    except scripts.NotAllowed as exc:
        flash(str(exc), "error")
    else:
        flash(done, "success")
    return redirect(url_for("support.detail", job_id=job.id))
