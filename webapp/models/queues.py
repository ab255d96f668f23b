from sqlalchemy import ForeignKey, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import db
from webapp.models.accounts import User
from webapp.models.types import UTCDateTime, utcnow


class QueueState(db.Model):
    """What an administrator decided about one queue: paused (by whom, when, why) and whether a
    failed run pauses it. Kept in the database, so a pause outlives restarts of the web, the
    workers, the scheduler and Redis. A queue without a row is running and has no setting; its
    row is written the first time it is paused or its setting changes."""

    __tablename__ = "queue_states"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused_at: Mapped[object | None] = mapped_column(UTCDateTime)
    paused_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    paused_by_name: Mapped[str] = mapped_column(String(80), default="")  # "system" for a pause on failure
    reason: Mapped[str] = mapped_column(Text, default="")
    # The failed run that paused the queue (no foreign key: the run may be purged from history).
    paused_run_id: Mapped[int | None]
    pause_on_failure: Mapped[bool] = mapped_column(default=False)
    # Bumped by whoever must be alone with the queue (a serial queue's hand-over and claim): the
    # UPDATE takes the row's lock (PostgreSQL) or the write lock (SQLite) until the commit.
    seq: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    paused_by: Mapped[User | None] = relationship()

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    @classmethod
    def paused_names(cls) -> set[str]:
        return set(db.session.scalars(select(cls.name).where(cls.paused_at.isnot(None))))

    @classmethod
    def ensure(cls, name: str) -> "QueueState":
        """The queue's row, made if missing (the caller commits)."""
        row = db.session.get(cls, name)
        if row is None:
            row = cls(name=name)
            db.session.add(row)
            db.session.flush()
        return row

    @classmethod
    def lock(cls, name: str) -> None:
        """Be alone with the queue until the transaction ends; the row must exist (ensure)."""
        db.session.execute(update(cls).where(cls.name == name).values(seq=cls.seq + 1, updated_at=cls.updated_at)
                           .execution_options(synchronize_session=False))

    def __repr__(self):
        return f"<QueueState {self.name} {'paused' if self.paused else 'running'}>"
