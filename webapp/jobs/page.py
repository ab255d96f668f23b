"""The job page and its actions, and the job form: registered on the jobs blueprint."""
from datetime import datetime

from flask import flash, make_response, redirect, render_template, request, url_for
from markupsafe import Markup
from flask_login import current_user

from webapp import charts, presenters
from webapp.auth.permissions import get_job_or_404
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.forms import ConfirmForm
from webapp.jobs import editing, tabs, typepages
from webapp.jobs.forms import RunNowForm, job_form, plan_preview_of
from webapp.jobs.routes import bp
from webapp.jobtypes import registry, script
from webapp.main.filters import localtime
from webapp.models import Run, Trigger
from webapp.pagination import paginate
from webapp.scheduling import sync


@bp.route("/<int:job_id>")
def detail(job_id):
    """One job, with tabs: information, scheduling, latest executions, audit and charts (?tab=)."""
    job = get_job_or_404(current_user, job_id)
    if job.job_type == script.KEY:  # a script job's page is on the support page (its viewers see it)
        return redirect(url_for("support.detail", job_id=job.id))
    tab = tabs.tab_of(request.args.get("tab"))
    context = {**_page_context(job, tab), **TAB_CONTEXT[tab](job)}
    target = request.htmx.target if request.htmx and not request.htmx.history_restore_request else None
    template = {"job-tab": f"jobs/_tab_{tab}.html", "runs-table": "jobs/_runs.html"}.get(target, "jobs/detail.html")
    response = make_response(render_template(template, **context))
    response.vary.add("HX-Request")  # one address answers a fragment or the page: caches keep both apart
    return response


def _page_context(job, tab):
    return dict(job=job, tab=tab, tabs=tabs.TABS, run_form=RunNowForm(), confirm=ConfirmForm(),
                job_type=presenters.job_type(job))


def _information(job):
    return {}


def _scheduling(job, plan_form=None, **outcome):
    form, params, job_type = plan_form or job_form(current_user, job, posted=False)
    return dict(upcoming=presenters.upcoming_fires(job), last_run=tabs.last_ran(job.id),
                **_form_context(form, params, job_type, job), **outcome)


def _executions(job):
    wanted = tabs.run_filter(request.args)
    runs = paginate(tabs.job_runs_query(job.id, wanted), tabs.RUN_SORTS, "id", "desc", tiebreak=None)
    return dict(runs=runs, wanted=wanted, window=tabs.RUN_WINDOW,
                polling=tabs.has_active_run(job.id) or any(not run.is_final for run in runs.items))


def _audit(job):
    events = paginate(tabs.job_audit_query(current_user, job.id), tabs.AUDIT_SORTS, "at", "desc", tiebreak=None)
    return dict(events=events, audit_runs=tabs.AUDIT_RUN_WINDOW)


def _charts(job):
    rows = tabs.recent_durations(job.id)
    bars, unit, size = tabs.duration_bars(rows, lambda run: url_for("runs.detail", run_id=run.id))
    days = tabs.daily_outcomes(job.id, datetime.now(sync.timezone()).date())
    return dict(durations=rows, duration_chart=charts.stacked_bars(
                    bars, title=f"Duration of the last {len(rows)} runs of {job.name}, in {unit}", unit=f" {unit}",
                    label_every=max(1, len(bars) // 10)),
                days=days, rate_chart=charts.stacked_bars(
                    tabs.rate_bars(days), title=f"Share of runs that succeeded per day, last {len(days)} days",
                    unit=" %", label_every=5))


TAB_CONTEXT = {"information": _information, "scheduling": _scheduling, "executions": _executions,
               "audit": _audit, "charts": _charts}


@bp.route("/<int:job_id>/plan", methods=["POST"])
def plan_save(job_id):
    """Save the schedule from the scheduling tab; the job's other settings stay as they are."""
    job = get_job_or_404(current_user, job_id)
    plan_form = job_form(current_user, job, saving=True)
    form = plan_form[0]
    outcome, status = {}, 200
    try:
        changed = editing.update_plan(current_user, job, *form.plan_input())
    except editing.InvalidJob as exc:
        form.show_errors(exc.errors, None)
        outcome, status = dict(refused=True), 400
    except editing.EditConflict as exc:
        # Nothing is saved: the form starts again from the schedule the other save left.
        plan_form, outcome, status = job_form(current_user, job, posted=False), dict(conflict=exc), 409
    else:
        if not request.htmx:
            flash("The schedule is saved." if changed else "The schedule was not changed.",
                  "success" if changed else "info")
            return redirect(url_for("jobs.detail", job_id=job.id, tab="scheduling"))
        outcome = dict(saved=bool(changed))
    context = {**_page_context(job, "scheduling"), **_scheduling(job, plan_form, **outcome)}
    if request.htmx:  # htmx swaps only 2xx answers: the fragment says what went wrong
        return render_template("jobs/_tab_scheduling.html", **context)
    return render_template("jobs/detail.html", **context), status


@bp.route("/<int:job_id>/run", methods=["POST"])
def run_now(job_id):
    """Queue a run of the job now (it waits if one is already running) and show it."""
    job = get_job_or_404(current_user, job_id)
    form = RunNowForm()  # CSRFProtect has already checked the token of every POST
    if not form.validate():
        flash(f"Not started: {' '.join(form.args.errors)}", "error")
        return redirect(url_for("jobs.detail", job_id=job.id))
    try:
        run = dispatch.request_run(job, trigger=Trigger.HAND, user=current_user, args=form.args.data or "")
    except registry.InvalidArguments as exc:
        flash(f"Not started: {exc}", "error")
        return redirect(url_for("jobs.detail", job_id=job.id))
    except dispatch.NotRunnable as exc:
        flash(str(exc), "error")
        return redirect(url_for("jobs.detail", job_id=job.id))
    # No flash: the run page shows the run's state as it is (a "queued" notice would outlive it).
    return redirect(url_for("runs.detail", run_id=run.id))


MINUTE = "%Y-%m-%d %H:%M"


@bp.route("/<int:job_id>/skip-next", methods=["POST"])
def skip_next(job_id):
    """Cancel only the next planned occurrence of the job."""
    job = get_job_or_404(current_user, job_id)
    run = dispatch.skip_next_occurrence(job, current_user)
    if run is None:
        flash("The job has no planned occurrence.", "error")
    else:
        following = f"the next is {localtime(job.next_fire_at, MINUTE)}" if job.next_fire_at else "none follows"
        flash(f"The occurrence of {localtime(run.occurrence_at, MINUTE)} is skipped; {following}.", "success")
    return redirect(url_for("jobs.detail", job_id=job.id, tab="scheduling"))


@bp.route("/new", methods=["GET", "POST"])
def new():
    """The form for a new job; a valid POST saves and schedules it and opens its page."""
    saving = _saving()
    form, params, job_type = job_form(current_user, None, saving)
    if saving:
        try:
            job = editing.create_job(current_user, form.job_input(params, job_type))
        except editing.InvalidJob as exc:
            form.show_errors(exc.errors, params)
            return _render_form(form, params, job_type, None, refused=True), 400
        flash(f"Job “{job.name}” is saved.", "success")
        return redirect(url_for("jobs.detail", job_id=job.id))
    return _render_form(form, params, job_type, None)


@bp.route("/<int:job_id>/edit", methods=["GET", "POST"])
def edit(job_id):
    """The form to change a job; a system job keeps the name, description and type of its code."""
    job = get_job_or_404(current_user, job_id)
    if job.job_type == script.KEY:  # its script and configuration are edited on the support page
        return redirect(url_for("support.edit", job_id=job.id))
    saving = _saving()
    form, params, job_type = job_form(current_user, job, saving)
    if saving:
        try:
            changed = editing.update_job(current_user, job, form.job_input(params, job_type))
        except editing.InvalidJob as exc:
            form.show_errors(exc.errors, params)
            return _render_form(form, params, job_type, job, refused=True), 400
        except editing.EditConflict as exc:
            # Nothing is saved: the form starts again from the settings the other save left.
            form, params, job_type = job_form(current_user, job, posted=False)
            return _render_form(form, params, job_type, job, conflict=exc), 409
        flash(f"Job “{job.name}” is saved." if changed else "Nothing was changed.",
              "success" if changed else "info")
        return redirect(url_for("jobs.detail", job_id=job.id))
    return _render_form(form, params, job_type, job)


@bp.route("/new/type-fields", methods=["POST"], defaults={"job_id": None})
@bp.route("/<int:job_id>/edit/type-fields", methods=["POST"])
def type_fields(job_id):
    """HTMX: the parameter and plan fields of the job type just chosen."""
    return _form_fragment(job_id, "jobs/_type_fields.html")


@bp.route("/new/plan-fields", methods=["POST"], defaults={"job_id": None})
@bp.route("/<int:job_id>/edit/plan-fields", methods=["POST"])
def plan_fields(job_id):
    """HTMX: the fields of the schedule kind just chosen, with their fire times."""
    return _form_fragment(job_id, "jobs/_plan_fields.html")


@bp.route("/plan-preview", methods=["POST"], defaults={"job_id": None})
@bp.route("/<int:job_id>/plan-preview", methods=["POST"])
def plan_preview(job_id):
    """HTMX: the next five fire times of the plan as typed (or what is wrong with it)."""
    return _form_fragment(job_id, "jobs/_plan_preview.html")


@bp.route("/<int:job_id>/remove", methods=["POST"])
def remove(job_id):
    """Take the job off its plan; it stays listed and can be restored."""
    job = get_job_or_404(current_user, job_id)
    running = db.session.scalar(Run.active_for(job.id).limit(1))
    note = f" Run #{running.id} goes on." if running is not None else ""
    return _act(job, editing.remove_job, f"“{job.name}” is removed: it no longer runs on its plan.{note}")


@bp.route("/<int:job_id>/restore", methods=["POST"])
def restore(job_id):
    """Put a removed job back on its plan."""
    job = get_job_or_404(current_user, job_id)
    return _act(job, editing.restore_job, f"“{job.name}” is restored and runs on its plan again.")


@bp.route("/<int:job_id>/delete", methods=["POST"])
def delete(job_id):
    """Delete the job (not a system job); its runs' files and its audit trail stay."""
    job = get_job_or_404(current_user, job_id)
    history = url_for("audit.list", object_type="job", object_id=job.id)
    done = Markup('“{}” is deleted. Its runs\' files are kept, and its history stays on the <a href="{}">audit '
                  'page</a>.').format(job.name, history)
    return _act(job, editing.delete_job, done, then=url_for("jobs.list"))


def _act(job, action, done, then=None):
    try:
        action(current_user, job)
    except editing.NotAllowed as exc:
        flash(str(exc), "error")
        return redirect(url_for("jobs.detail", job_id=job.id))
    flash(done, "success")
    return redirect(then or url_for("jobs.detail", job_id=job.id))


def _saving() -> bool:
    """A POST of the form's save button (not of a no-JavaScript "show the fields" button)."""
    return request.method == "POST" and "refresh" not in request.form


def _form_fragment(job_id, template):
    job = get_job_or_404(current_user, job_id) if job_id is not None else None
    form, params, job_type = job_form(current_user, job)
    return render_template(template, **_form_context(form, params, job_type, job))


def _render_form(form, params, job_type, job, refused=False, conflict=None):
    return render_template("jobs/form.html", refused=refused, conflict=conflict,
                           **_form_context(form, params, job_type, job))


def _form_context(form, params, job_type, job):
    key = {"job_id": job.id} if job is not None else {}
    return dict(form=form, params=params, job_type=job_type, job=job, preview=plan_preview_of(form, job_type, job),
                facts=typepages.form_facts(job_type, current_user), domain_note=typepages.domain_note(job_type),
                type_fields_url=url_for("jobs.type_fields", **key),
                plan_fields_url=url_for("jobs.plan_fields", **key),
                preview_url=url_for("jobs.plan_preview", **key))

