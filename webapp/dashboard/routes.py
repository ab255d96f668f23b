"""The page after sign-in: what runs now, what failed, what fires next, the last 24 hours."""
from flask import Blueprint, render_template, request
from flask_login import current_user, login_required

from webapp.charts import Bar, stacked_bars
from webapp.dashboard import queries
from webapp.main.filters import localtime
from webapp.models.runs import STATUS_LABELS
from webapp.models.types import utcnow
from webapp.queues.queries import statuses as queue_statuses

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

# Seconds between refreshes of the live panel: idle, often enough that a run of a few seconds
# shows before it ends.
POLL_ACTIVE, POLL_IDLE = 3, 5
CHANGED = "dashboard-changed"  # the event that makes the summary refresh itself


@bp.before_request
@login_required
def _signed_in():
    """The dashboard needs a signed-in user."""


@bp.route("/")
def index():
    """Paused queues, runs in progress, counts of the last 24 hours, next fires and recent failures."""
    return render_template("dashboard/index.html", **_live(), **_summary(), paused_queues=_paused())


@bp.route("/live")
def live():
    """The panel of runs in progress, polled while the page is open; when the runs in progress
    differ from those the page showed (`seen`), the summary is told to refresh too. The paused
    queues' notice comes with it (out of band), so a pause shows as soon as a run would."""
    context = _live()
    response = render_template("dashboard/_live.html", **context) + \
        render_template("dashboard/_paused.html", paused_queues=_paused(), oob=True)
    seen = request.args.get("seen", "")
    if seen != context["seen"]:
        return response, 200, {"HX-Trigger": CHANGED}
    return response


@bp.route("/summary")
def summary():
    """Counts of the last 24 hours, the chart, the next fires and the latest failures."""
    return render_template("dashboard/_summary.html", **_summary())


def _live() -> dict:
    runs = queries.live_runs(current_user)
    active = queries.active_counts(current_user)
    busy = any(active.values())
    return dict(live_runs=runs, active=active, now=utcnow(), poll=POLL_ACTIVE if busy else POLL_IDLE,
                seen=",".join(str(live.run.id) for live in runs) + f";{active['queued']}")


def _paused() -> list:
    return list(queue_statuses(current_user, paused_only=True).values())


def _summary() -> dict:
    now = utcnow()
    day = queries.last_day(current_user, now)
    bars = [Bar(localtime(start, "%H:00"), [(status, counts.get(status, 0)) for status in queries.CHART_STATUSES])
            for start, counts in day.hours]
    chart = stacked_bars(bars, title="Runs per hour over the last 24 hours, by status", label_every=3)
    return dict(counts=day.counts, hours=day.hours, chart=chart,
                statuses=queries.CHART_STATUSES, next_fires=queries.next_fires(current_user),
                failures=queries.latest_failures(current_user, now), labels=STATUS_LABELS)
