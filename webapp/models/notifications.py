from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, backref, mapped_column, relationship

from webapp.extensions import db
from webapp.models.runs import Run
from webapp.models.types import UTCDateTime, utcnow


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its first or next attempt
    SENT = "sent"  # the mail server accepted it
    FAILED = "failed"  # given up: refused for good, or every retry used


DELIVERY_LABELS = {
    DeliveryStatus.PENDING: "Pending",
    DeliveryStatus.SENT: "Sent",
    DeliveryStatus.FAILED: "Failed",
}


class MailKind(StrEnum):
    REPORT = "report"  # a run's report, to the job's recipients
    QUEUE_PAUSED = "queue_paused"  # the run failed and paused its queue: to the superadmins


class EmailDelivery(db.Model):
    """One email about one run to one recipient (its report, or the notice that it paused its
    queue): created when the run ends, then sent from the "mail" queue. The unique (run,
    recipient, kind) makes queueing it idempotent.

    next_attempt_at is when the delivery may next be tried. A sender that takes a pending
    delivery moves it a few minutes ahead (a lease), so that a second sender finds nothing to
    do and a sender that died is replaced by the sweep once the lease has run out."""

    __tablename__ = "email_deliveries"
    __table_args__ = (
        UniqueConstraint("run_id", "recipient", "kind", name="uq_email_deliveries_run_recipient_kind"),
        Index("ix_email_deliveries_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Deliveries go with their run when the history is purged.
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    recipient: Mapped[str] = mapped_column(String(254))
    kind: Mapped[str] = mapped_column(String(20), default=MailKind.REPORT, server_default=MailKind.REPORT.value)
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[object | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[object | None] = mapped_column(UTCDateTime)

    run: Mapped[Run] = relationship(backref=backref("email_deliveries", order_by="EmailDelivery.id",
                                                    passive_deletes=True, lazy="select"))

    @property
    def status_label(self) -> str:
        return DELIVERY_LABELS[DeliveryStatus(self.status)]

    def __repr__(self):
        return f"<EmailDelivery {self.id} run={self.run_id} {self.recipient} {self.status}>"
