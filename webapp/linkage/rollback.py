"""The rollback step (S4 "Rollback"): undo everything an envelope loaded, in one transaction.

Its records go, and with them every match that involves one of them: the envelope's own matches
and those later envelopes made with its records. The project is then regrouped from the matches
that remain; a group id is the smallest record id of its component, so the groups come back
exactly as they were before the envelope (less what later envelopes brought, which keep their
records and their other matches). Notifications and runs stay, as the envelope's history.
"""
from sqlalchemy import delete, or_, select

from webapp.extensions import db
from webapp.linkage import steps
from webapp.models import Run
from webapp.models.audit import record
from webapp.models.linkage import Envelope, EnvelopeStatus, LinkageMatch, LinkageRecord
from webapp.models.types import utcnow


def rollback(ctx, envelope: Envelope):
    project_id = envelope.project_id
    records = select(LinkageRecord.id).where(LinkageRecord.envelope_id == envelope.id).scalar_subquery()
    matches = db.session.execute(delete(LinkageMatch).where(
        LinkageMatch.project_id == project_id,
        or_(LinkageMatch.envelope_id == envelope.id, LinkageMatch.record_l.in_(records),
            LinkageMatch.record_r.in_(records)))).rowcount
    removed = db.session.execute(delete(LinkageRecord).where(LinkageRecord.envelope_id == envelope.id)).rowcount
    ctx.progress(50, "regrouping the project")
    changed, groups = steps.regroup(project_id, commit=False)
    who = _requested_by(ctx)
    before = {"status": envelope.status, "record_count": envelope.record_count}
    envelope.status = EnvelopeStatus.ROLLED_BACK
    envelope.reason = f"Rolled back by {who}."
    envelope.record_count = 0
    envelope.finished_at = utcnow()
    record("rolled back", "envelope", envelope, actor=ctx.run_as, run=db.session.get(Run, ctx.run_id),
           before=before, after={"status": envelope.status, "records_removed": removed, "matches_removed": matches})
    db.session.commit()
    ctx.stat("records_removed", removed)
    ctx.stat("matches_removed", matches)
    ctx.stat("records_regrouped", changed)
    ctx.stat("groups", groups)
    ctx.progress(100, "rolled back")
    ctx.info(f"Removed {removed} records and {matches} matches; {changed} records of the project changed group; "
             f"it now has {groups} groups.")


def _requested_by(ctx) -> str:
    """Who asked for the rollback: the run's requester (the rollback request is audited under them)."""
    run = db.session.get(Run, ctx.run_id)
    user = run.requested_by if run is not None else None
    return user.username if user is not None else "the system"
