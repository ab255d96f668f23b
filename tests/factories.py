"""Small builders for test data; each commits what it makes."""
import re
from itertools import count

from webapp.extensions import db
from webapp.models import Domain, Job, Role, Scope, User

_n = count(1)


def csrf_from(response) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', response.get_data(as_text=True)) or \
        re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    assert match, "no CSRF token on the page"
    return match.group(1)


def make_domain(name=None, parent=None) -> Domain:
    domain = Domain(name=name or f"Domain {next(_n)}", parent=parent)
    db.session.add(domain)
    db.session.commit()
    return domain


def make_user(role=Role.SUPERADMIN, *, domain=None, supervised=(), username=None, password="pw") -> User:
    user = User(username=username or f"{role}-{next(_n)}", role=role, domain=domain, supervised=list(supervised))
    if role != Role.SYSTEM:
        user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def make_job(name=None, *, domain=None, job_type="system.selftest", plan=None, params=None, **extra) -> Job:
    job = Job(name=name or f"Job {next(_n)}", job_type=job_type, domain=domain,
              scope=Scope.DOMAIN if domain else Scope.INSTALLATION, plan=plan or {"kind": "disabled"},
              params=params if params is not None else {"duration": 0, "lines_per_second": 0}, **extra)
    db.session.add(job)
    db.session.commit()
    return job


def make_script_job(script="log('hello')", name=None, *, config=None, time_limit=None, plan=None, run_as=None,
                    saved_by=None, **extra) -> Job:
    """A support script job (type support.script) with its first script version. No plan by default,
    so that only the test starts its runs."""
    from webapp.models.scripts import ScriptVersion, script_md5

    job = make_job(name, job_type="support.script", plan=plan,
                   params={"config": dict(config or {}), "time_limit": time_limit},
                   run_as_id=getattr(run_as, "id", None), **extra)
    db.session.add(ScriptVersion(job_id=job.id, number=1, script=script, md5=script_md5(script),
                                 saved_by_id=getattr(saved_by, "id", None),
                                 saved_by_name=getattr(saved_by, "username", "") or ""))
    db.session.commit()
    return job
