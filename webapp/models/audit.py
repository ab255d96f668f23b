from sqlalchemy import JSON, ForeignKey, Index, String, Text, event
from sqlalchemy.orm import Session
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db
from webapp.models.types import UTCDateTime, utcnow


class AuditIsAppendOnly(RuntimeError):
    """Raised when code tries to change or remove an audit record."""


class AuditEvent(db.Model):
    """Append-only: the application never edits or deletes an audit record."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_object", "object_type", "object_id"),
        Index("ix_audit_run", "run_id"),  # a job's tab and a run's popup ask by run
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(String(80))  # kept even if the user goes
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL")
    )
    action: Mapped[str] = mapped_column(String(40))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[int | None]
    object_name: Mapped[str] = mapped_column(String(200), default="")
    domain_id: Mapped[int | None] = mapped_column(ForeignKey("domains.id"))
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
    message: Mapped[str] = mapped_column(Text, default="")


def record(action, obj_type, obj=None, *, actor, run=None, before=None, after=None, message="",
           domain_id=None, object_name=None):
    """Add an audit event to the session (committed with the change it describes).

    `actor` is always named by the caller: the user who made the change, or None for the system
    (a planned run, housekeeping, the command line). The model does not guess it from the
    request, so a change made by the system while somebody is signed in is not theirs, and the
    same code audits alike in a request, a worker and the CLI."""
    event = AuditEvent(
        actor_id=getattr(actor, "id", None),
        actor_name=getattr(actor, "username", None) or "system",
        run_id=getattr(run, "id", None),
        action=action,
        object_type=obj_type,
        object_id=getattr(obj, "id", None),
        object_name=object_name if object_name is not None else (getattr(obj, "name", "") or ""),
        domain_id=domain_id if domain_id is not None else getattr(obj, "domain_id", None),
        before=before,
        after=after,
        message=message,
    )
    db.session.add(event)
    return event


@event.listens_for(AuditEvent, "before_update")
@event.listens_for(AuditEvent, "before_delete")
def _refuse_change(mapper, connection, target):
    raise AuditIsAppendOnly(f"Audit record {target.id} cannot be changed or deleted.")


@event.listens_for(Session, "do_orm_execute")
def _refuse_bulk_change(state):
    """UPDATE or DELETE statements on the audit table, which bypass the per-object events above."""
    if (state.is_update or state.is_delete) and any(
            getattr(m, "class_", None) is AuditEvent for m in state.all_mappers):
        raise AuditIsAppendOnly("Audit records cannot be changed or deleted.")
