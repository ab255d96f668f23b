"""Accounts: creating them, checking a sign-in, changing a password, role and domains,
deactivating and reactivating, API tokens; shared by the admin pages, the sign-in form, the CLI
and the demo data. Each change is audited under `actor`: the user who makes it, or None for the
command line and the demo data (the system)."""
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import ApiToken, Domain, Role, User, UserSession
from webapp.models.audit import record
from webapp.models.types import utcnow


class AccountError(ValueError):
    pass


class LastSuperadmin(AccountError):
    """The change would leave no active superadmin: nobody could manage users, domains or settings."""


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
    record("create", "user", user, actor=actor, object_name=username,
           after={key: value for key, value in _profile(user).items() if value not in ("", [])})
    db.session.commit()
    return user


def _domain(name) -> Domain:
    domain = db.session.scalar(select(Domain).where(Domain.name == name))
    if domain is None:
        raise AccountError(f"No domain {name!r}.")
    return domain


def _profile(user: User) -> dict:
    """What the audit trail keeps of an account's settings (never its password)."""
    return {"role": Role(user.role).value, "email": user.email or "",
            "domain": user.domain.name if user.domain else "",
            "supervised": sorted(d.name for d in user.supervised), "active": bool(user.active)}


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
    if user.role == Role.SYSTEM:
        raise AccountError("A system account has no password: it never signs in (it uses API tokens).")
    user.set_password(password)
    UserSession.end_all_of(user)
    record("password", "user", user, actor=actor, object_name=user.username)
    db.session.commit()


def is_last_active_superadmin(user: User) -> bool:
    if user.role != Role.SUPERADMIN or not user.active:
        return False
    others = select(func.count(User.id)).where(User.role == Role.SUPERADMIN, User.active.is_(True), User.id != user.id)
    return not db.session.scalar(others)


def _keep_a_superadmin(user: User, doing: str, actor) -> None:
    """Refuse a superadmin's change that leaves no active superadmin. The command line (actor
    None) may: whoever runs it can also create a superadmin there, and must be able to lock an
    account whatever the state."""
    if actor is not None and is_last_active_superadmin(user):
        raise LastSuperadmin(f"{user.username} is the last active superadmin: {doing} would leave nobody "
                             "able to manage users, domains and settings. Make another user superadmin first.")


def update_user(user: User, *, role, email=None, domain=None, supervised=(), actor=None) -> bool:
    """Change the role, email, domain and supervised domains; audited with before and after.
    False when nothing changed. A domain administrator needs a domain; the last active
    superadmin keeps the role."""
    role = Role(role)
    if role == Role.DOMAIN_ADMIN and domain is None:
        raise AccountError("A domain administrator needs a domain.")
    if role != Role.SUPERADMIN:
        _keep_a_superadmin(user, "changing the role", actor)
    before = _profile(user)
    user.role, user.email, user.domain = role, (email or None), domain
    user.supervised = sorted(supervised, key=lambda d: d.name)
    after = _profile(user)
    if after == before:
        return False
    changed = [key for key in after if after[key] != before[key]]
    record("edit", "user", user, actor=actor, object_name=user.username,
           before={key: before[key] for key in changed}, after={key: after[key] for key in changed})
    db.session.commit()
    return True


def deactivate(user: User, *, actor=None) -> None:
    """The user can no longer sign in or use API tokens; every session of the user ends. In the
    console the last active superadmin stays active, and nobody deactivates themselves."""
    if actor is not None and actor.id == user.id:
        raise AccountError("You cannot deactivate yourself; another superadmin can.")
    _keep_a_superadmin(user, "deactivating them", actor)
    user.active = False
    UserSession.end_all_of(user)
    record("deactivate", "user", user, actor=actor, object_name=user.username,
           before={"active": True}, after={"active": False})
    db.session.commit()


def reactivate(user: User, *, actor=None) -> None:
    """The user may sign in and use API tokens again (tokens revoked meanwhile stay revoked)."""
    if user.active:
        return
    user.active = True
    record("reactivate", "user", user, actor=actor, object_name=user.username,
           before={"active": False}, after={"active": True})
    db.session.commit()


def issue_token(user: User, name: str, *, actor=None) -> tuple[ApiToken, str]:
    """A new API token for the user; the plain token is returned once and never stored."""
    name = (name or "").strip()
    if not name:
        raise AccountError("Name the token after what will use it.")
    if not user.active:
        raise AccountError(f"{user.username} is deactivated: a token would not work.")
    token, plain = ApiToken.issue(user, name)
    db.session.flush()
    record("token_create", "user", user, actor=actor, object_name=user.username, after={"token": name},
           message=f"API token #{token.id} “{name}”")
    db.session.commit()
    return token, plain


def revoke_token(token: ApiToken, *, actor=None) -> None:
    """The token stops working at once; it stays listed as revoked."""
    if token.revoked_at is not None:
        return
    token.revoked_at = utcnow()
    record("token_revoke", "user", token.user, actor=actor, object_name=token.user.username,
           before={"token": token.name}, message=f"API token #{token.id} “{token.name}” revoked")
    db.session.commit()
