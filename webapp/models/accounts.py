import hashlib
import secrets
from datetime import timedelta
from enum import StrEnum
from functools import cache

from flask_login import UserMixin
from sqlalchemy import Column, ForeignKey, String, Table, delete, or_, select, update
from sqlalchemy.orm import Mapped, joinedload, mapped_column, relationship
from werkzeug import security
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.extensions import db
from webapp.models.types import UTCDateTime, utcnow


class Role(StrEnum):
    SUPERADMIN = "superadmin"
    SYSADMIN = "sysadmin"
    DOMAIN_ADMIN = "domain_admin"
    SYSTEM = "system"  # an account jobs run as, and the API uses; never signs in to the UI


ROLE_LABELS = {
    Role.SUPERADMIN: "Superadmin",
    Role.SYSADMIN: "System administrator",
    Role.DOMAIN_ADMIN: "Domain administrator",
    Role.SYSTEM: "System account",
}

supervision = Table(
    "supervision",
    db.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("domain_id", ForeignKey("domains.id", ondelete="CASCADE"), primary_key=True),
)


class Domain(db.Model):
    __tablename__ = "domains"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    # The study's or site's OID in ODM files (StudyOID): an import takes a file only into the
    # domain it names.
    oid: Mapped[str | None] = mapped_column(String(100), unique=True)
    # What the domain is for: clinical data (a study or a site), or a linkage project, which holds
    # envelopes of person records (models/linkage.py).
    kind: Mapped[str] = mapped_column(String(20), default="clinical", server_default="clinical")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("domains.id"))
    parent: Mapped["Domain | None"] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list["Domain"]] = relationship(back_populates="parent")

    @staticmethod
    def subtree_ids(root_ids) -> set[int]:
        """The given domains and every domain nested below them."""
        parents = dict(db.session.execute(select(Domain.id, Domain.parent_id)).all())
        wanted = set(root_ids)
        changed = True
        while changed:
            changed = False
            for child, parent in parents.items():
                if parent in wanted and child not in wanted:
                    wanted.add(child)
                    changed = True
        return wanted

    def __repr__(self):
        return f"<Domain {self.name}>"


class User(UserMixin, db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str | None] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(20))
    domain_id: Mapped[int | None] = mapped_column(ForeignKey("domains.id"))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[object | None] = mapped_column(UTCDateTime)

    domain: Mapped[Domain | None] = relationship()
    supervised: Mapped[list[Domain]] = relationship(secondary=supervision)

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    @staticmethod
    def check_no_password(password: str) -> None:
        """As much work as checking a password, for a sign-in that fails anyway (unknown user,
        system account, inactive user): the answer's timing must not tell those apart."""
        check_password_hash(_stand_in_hash(), password)

    @property
    def is_active(self) -> bool:  # Flask-Login: inactive users cannot sign in
        return self.active

    @property
    def can_sign_in(self) -> bool:
        return self.active and self.role != Role.SYSTEM

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(Role(self.role), self.role)

    def __repr__(self):
        return f"<User {self.username}>"


@cache
def _stand_in_hash() -> str:
    # Werkzeug's own default, not this module's name (which tests swap for a cheap method).
    return security.generate_password_hash(secrets.token_urlsafe(16))


TOKEN_USE_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a plain SHA-256 is enough; a slow hash buys nothing here.
    return hashlib.sha256(token.encode()).hexdigest()


class UserSession(db.Model):
    """A signed-in browser. The session cookie holds only a random token; its hash is stored
    here, so signing out, a password change or a deactivation ends the session on the server,
    whatever cookie a browser (or an attacker) kept."""

    __tablename__ = "user_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[object | None] = mapped_column(UTCDateTime)
    address: Mapped[str] = mapped_column(String(64), default="")
    user: Mapped[User] = relationship()

    # A page view refreshes last_seen_at only when it is older than this, so reading is no write.
    TOUCH_EVERY = timedelta(minutes=1)

    @classmethod
    def open(cls, user: User, address: str) -> tuple["UserSession", str]:
        """A new session for the user; the plain token goes in the cookie and is never stored."""
        plain = secrets.token_urlsafe(32)
        row = cls(user=user, token_hash=hash_token(plain), address=(address or "")[:64])
        db.session.add(row)
        return row, plain

    @classmethod
    def live(cls, plain: str, idle: timedelta) -> "UserSession | None":
        """The session this token opened, unless it has ended or been idle longer than `idle`."""
        row = db.session.scalar(select(cls).options(joinedload(cls.user)).where(cls.token_hash == hash_token(plain)))
        if row is None or row.ended_at is not None or row.last_seen_at < utcnow() - idle:
            return None
        return row

    def touch(self) -> bool:
        """Note that the session is in use; True when that changed the row."""
        now = utcnow()
        if now - self.last_seen_at < self.TOUCH_EVERY:
            return False
        self.last_seen_at = now
        return True

    @classmethod
    def end_token(cls, plain: str) -> None:
        db.session.execute(update(cls).where(cls.token_hash == hash_token(plain), cls.ended_at.is_(None))
                           .values(ended_at=utcnow()))

    @classmethod
    def end_all_of(cls, user: User) -> None:
        db.session.execute(update(cls).where(cls.user_id == user.id, cls.ended_at.is_(None))
                           .values(ended_at=utcnow()))

    @classmethod
    def forget_dead_of(cls, user: User, idle: timedelta) -> None:
        """Drop the user's ended and idle sessions: nothing can use them again."""
        db.session.execute(delete(cls).where(cls.user_id == user.id, or_(
            cls.ended_at.isnot(None), cls.last_seen_at < utcnow() - idle)))


class ApiToken(db.Model):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(80), default="", server_default="")  # what it is for
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[object | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[object | None] = mapped_column(UTCDateTime)
    user: Mapped[User] = relationship()

    @classmethod
    def issue(cls, user: User, name: str = "") -> tuple["ApiToken", str]:
        """A new token for the user; the plain token is returned once and never stored."""
        plain = "ft_" + secrets.token_urlsafe(32)
        token = cls(user=user, token_hash=hash_token(plain), name=name)
        db.session.add(token)
        return token, plain

    @classmethod
    def user_for(cls, plain: str) -> User | None:
        token = db.session.scalar(select(cls).where(cls.token_hash == hash_token(plain)))
        if token is None or token.revoked_at is not None or not token.user.active:
            return None
        now = utcnow()
        # Written at most once a minute: an API client's every call need not be a write.
        if token.last_used_at is None or now - token.last_used_at >= TOKEN_USE_RESOLUTION:
            token.last_used_at = now
        return token.user
