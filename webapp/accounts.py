"""Accounts: creating them, checking a sign-in, changing a password, deactivating; shared by the
sign-in form, the CLI and the demo data. Each change is audited under `actor`: the user who
makes it, or None for the command line and the demo data (the system)."""
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Domain, Role, User, UserSession
from webapp.models.audit import record


class AccountError(ValueError):
    pass


def create_user(username, role, *, password=None, email=None, domain_name=None, supervise=(), actor=None) -> User:
    role = Role(role)
    if db.session.scalar(select(User).where(User.username == username)):
        raise AccountError(f"User {username!r} already exists.")
    if role == Role.DOMAIN_ADMIN and not domain_name:
        raise AccountError("A domain administrator needs --domain.")
    if role != Role.SYSTEM and not password:
        raise AccountError("A password is required.")
    user = User(username=username, role=role, email=email)
    if password:
        user.set_password(password)
    if domain_name:
        user.domain = _domain(domain_name)
    user.supervised = [_domain(name) for name in supervise]
    db.session.add(user)
    db.session.flush()
    record("create", "user", user, actor=actor, object_name=username, after={"role": role.value})
    db.session.commit()
    return user


def _domain(name) -> Domain:
    domain = db.session.scalar(select(Domain).where(Domain.name == name))
    if domain is None:
        raise AccountError(f"No domain {name!r}.")
    return domain


def authenticate(username: str, password: str) -> User | None:
    """The user these credentials sign in, or None (system accounts never sign in to the UI).
    Every refusal costs one password check, so its timing does not tell which names exist."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None or not user.can_sign_in or not user.password_hash:
        User.check_no_password(password)
        return None
    return user if user.check_password(password) else None


def find_user(username) -> User:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise AccountError(f"No user {username!r}.")
    return user


def set_password(user: User, password: str, *, actor=None) -> None:
    """A new password; every session of the user ends (whoever kept one is signed out)."""
    if not password:
        raise AccountError("A password is required.")
    user.set_password(password)
    UserSession.end_all_of(user)
    record("password", "user", user, actor=actor, object_name=user.username)
    db.session.commit()


def deactivate(user: User, *, actor=None) -> None:
    """The user can no longer sign in or use API tokens; every session of the user ends."""
    user.active = False
    UserSession.end_all_of(user)
    record("deactivate", "user", user, actor=actor, object_name=user.username)
    db.session.commit()
