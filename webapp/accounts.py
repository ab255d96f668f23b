"""Creating accounts, shared by the CLI and the demo data."""
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Domain, Role, User
from webapp.models.audit import record


class AccountError(ValueError):
    pass


def create_user(username, role, *, password=None, email=None, domain_name=None, supervise=()) -> User:
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
    record("create", "user", user, object_name=username, after={"role": role.value})
    db.session.commit()
    return user


def _domain(name) -> Domain:
    domain = db.session.scalar(select(Domain).where(Domain.name == name))
    if domain is None:
        raise AccountError(f"No domain {name!r}.")
    return domain
