"""The one place that decides what a user may see and do.

Every view, API call, download and log stream asks these functions; they answer with
queries (so a list never holds a row its reader may not see) and with 404 for an id the
user may not see, so a guessed id reveals nothing. What a user may see of jobs has two
parts: where a job runs (its domain, or the installation) and what it is (its job type, which
may be one only some roles see). `job_filter` joins the two for every query of jobs, runs and
files, and `audit_query` applies the same two to audit records.
"""
from flask import abort, g, has_request_context, request
from sqlalchemy import and_, false, not_, or_, select, true

from webapp.extensions import db
from webapp.jobtypes import registry
from webapp.models import AuditEvent, Dataset, Domain, Job, Role, Run, RunFile, Scope
from webapp.models.settings import get_setting


def visible_domain_ids(user) -> set[int] | None:
    """Domains whose jobs the user sees; None means every domain. Worked out once per request
    and user (a page asks for several lists, each with the same clause)."""
    if user.role == Role.SUPERADMIN:
        return None
    if not has_request_context():
        return _domain_ids_of(user)
    cache = g.setdefault("_visible_domain_ids", {})
    if user.id not in cache:
        cache[user.id] = _domain_ids_of(user)
    return set(cache[user.id])


def _domain_ids_of(user) -> set[int]:
    roots = {d.id for d in user.supervised}
    if user.domain_id is not None:
        roots.add(user.domain_id)
    return Domain.subtree_ids(roots) if roots else set()


def sees_installation_jobs(user) -> bool:
    return user.role in (Role.SUPERADMIN, Role.SYSADMIN, Role.SYSTEM)


def hidden_job_types(user) -> frozenset[str]:
    """Keys of the installed job types the user may not see: those whose `visible_to` (the roles
    who see them, or a test of the user) leaves the user out. A type that names none is seen by
    everyone. Worked out once per request and user: a test may read a setting, and the queues
    page asks for each of its lists."""
    if not has_request_context():
        return _hidden_types_of(user)
    # In the request's own environ: the app context (and `g`) may outlive a request in tests.
    cache = request.environ.setdefault("firetime.hidden_job_types", {})
    if user.id not in cache:
        cache[user.id] = _hidden_types_of(user)
    return cache[user.id]


def _hidden_types_of(user) -> frozenset[str]:
    hidden = set()
    for job_type in registry.all_types():
        rule = job_type.visible_to
        if rule is None:
            continue
        if not (rule(user) if callable(rule) else user.role in rule):
            hidden.add(job_type.key)
    return frozenset(hidden)


def hidden_queues(user) -> set[str]:
    """Queues on which only job types hidden from the user run (the scripts queue, for those who
    may not use the support page): to them such a queue does not exist."""
    hidden = hidden_job_types(user)
    if not hidden:
        return set()
    keys_on = {}
    for job_type in registry.all_types():
        keys_on.setdefault(job_type.queue, set()).add(job_type.key)
    return {queue for queue, keys in keys_on.items() if keys <= hidden}


def job_types_for(user) -> list[registry.JobType]:
    """The installed job types the user may see (and so create jobs of)."""
    hidden = hidden_job_types(user)
    return [job_type for job_type in registry.all_types() if job_type.key not in hidden]


def _where_jobs_run(user):
    """A WHERE clause on Job: the jobs of the domains and the installation the user sees."""
    domains = visible_domain_ids(user)
    if domains is None:
        return true()
    clauses = [Job.domain_id.in_(domains)] if domains else []
    if sees_installation_jobs(user):
        clauses.append(Job.scope == Scope.INSTALLATION)
    return or_(*clauses) if clauses else false()


def job_filter(user):
    """A WHERE clause on Job for the jobs the user may see: where they run, and of a type the
    user may see. A hidden type hides its jobs from superadmins too, if it leaves them out."""
    hidden = hidden_job_types(user)
    where = _where_jobs_run(user)
    return and_(where, Job.job_type.not_in(hidden)) if hidden else where


def jobs_query(user):
    """Live (not deleted) jobs the user may see."""
    return Job.live().where(job_filter(user))


def runs_query(user):
    return select(Run).join(Run.job).where(job_filter(user))


def files_query(user):
    return select(RunFile).join(RunFile.job).where(job_filter(user))


def _one_or_404(query, what: str):
    """The one row the query finds, or 404 "No such <what>." (also when it exists but is not the
    user's to see: the answer must not tell the two apart)."""
    found = db.session.scalar(query)
    if found is None:
        abort(404, description=f"No such {what}.")
    return found


def get_job_or_404(user, job_id):
    return _one_or_404(jobs_query(user).where(Job.id == job_id), "job")


def get_run_or_404(user, run_id, job_id=None):
    query = runs_query(user).where(Run.id == run_id)
    if job_id is not None:
        query = query.where(Run.job_id == job_id)
    return _one_or_404(query, "run")


def get_file_or_404(user, file_id):
    return _one_or_404(files_query(user).where(RunFile.id == file_id), "file")


def domains_for_new_jobs(user):
    """Domains the user may create or move a job into."""
    domains = visible_domain_ids(user)
    query = select(Domain).order_by(Domain.name)
    return query if domains is None else query.where(Domain.id.in_(domains or {-1}))


# --- datasets and the archive of exported files ------------------------------------------------

def datasets_query(user):
    """Datasets of the domains the user sees: a domain administrator's domain and the sites below
    it, a system administrator's supervised domains, every domain for a superadmin. Those are also
    the datasets the user may create, change and delete (in domains_for_new_jobs)."""
    domains = visible_domain_ids(user)
    if domains is None:
        return select(Dataset)
    return select(Dataset).where(Dataset.domain_id.in_(domains) if domains else false())


def get_dataset_or_404(user, dataset_id):
    return _one_or_404(datasets_query(user).where(Dataset.id == dataset_id), "dataset")


def archive_query(user):
    """The archive of exported files the user may see: the output files of exports (they name a
    format) of the jobs the user may see, whatever became of the job (removed or deleted) or of
    its run (purged from history)."""
    return files_query(user).where(RunFile.file_format != "")


# --- linkage projects and their envelopes ---------------------------------------------------------

def projects_query(user):
    """The linkage projects (domains of kind linkage) the user sees, and so may upload envelopes to,
    cancel, retry and roll back the envelopes of."""
    from webapp.models.linkage import LINKAGE_KIND

    domains = visible_domain_ids(user)
    query = select(Domain).where(Domain.kind == LINKAGE_KIND).order_by(Domain.name)
    return query if domains is None else query.where(Domain.id.in_(domains or {-1}))


def envelopes_query(user):
    """Envelopes of the projects the user sees."""
    from webapp.models.linkage import Envelope

    domains = visible_domain_ids(user)
    if domains is None:
        return select(Envelope)
    return select(Envelope).where(Envelope.project_id.in_(domains) if domains else false())


def get_envelope_or_404(user, envelope_id):
    from webapp.models.linkage import Envelope

    return _one_or_404(envelopes_query(user).where(Envelope.id == envelope_id), "envelope")


# --- what a user may do ----------------------------------------------------------------------

def can_administer(user) -> bool:
    """Users, domains and settings: superadmins only; to anyone else those pages do not exist."""
    return user.is_authenticated and user.role == Role.SUPERADMIN


def can_see_server_paths(user) -> bool:
    """Server file paths in messages and tracebacks: they tell how the installation is laid out,
    which is the superadmins' business only."""
    return user.is_authenticated and user.role == Role.SUPERADMIN


def can_manage_queues(user) -> bool:
    """Pause, resume and clear queues: they serve every domain, so only those responsible for
    the installation. Cancelling one entry is anybody's who sees it (as on its run page)."""
    return user.role in (Role.SUPERADMIN, Role.SYSADMIN)


def can_use_support(user) -> bool:
    """The support pages (script jobs that run code): the roles the `support_roles` setting
    names, superadmins only unless an administrator widens it. A setting that is not a list of
    role names grants nothing beyond that default."""
    roles = get_setting("support_roles")
    if not isinstance(roles, (list, tuple)) or not all(isinstance(role, str) for role in roles):
        roles = [Role.SUPERADMIN.value]
    return user.role in roles


# --- the audit trail -------------------------------------------------------------------------

_JOB_OBJECTS = ("job", "run", "dataset", "item_value", "envelope")


def audit_query(user):
    """The audit records the user may read.

    A superadmin reads them all. Anyone else reads:
    - what they did themselves, and what was done to their own account;
    - what happened to queues (pause, resume, clear), for those who may manage queues;
    - what happened to jobs and runs (and datasets and imported values) they may see the domain of: an audit record keeps the
      domain its object had (`domain_id`), so the history of a deleted job stays readable to
      the people of its domain, and moving a job on does not rewrite who saw its past; records
      of installation jobs (no domain) for those who see installation jobs;
    - but nothing about a job of a type hidden from them (a support script job in their domain
      is not theirs to read about), and nothing about other people's accounts (sign-ins,
      passwords, accounts created): account administration is the superadmin's.
    """
    if user.role == Role.SUPERADMIN:
        return select(AuditEvent)
    own = or_(AuditEvent.actor_id == user.id,
              and_(AuditEvent.object_type == "user", AuditEvent.object_id == user.id))
    domains = visible_domain_ids(user) or set()
    where_jobs_run = [AuditEvent.domain_id.in_(domains)] if domains else []
    if sees_installation_jobs(user):
        where_jobs_run.append(AuditEvent.domain_id.is_(None))
    about_jobs = and_(AuditEvent.object_type.in_(_JOB_OBJECTS), or_(*where_jobs_run)) if where_jobs_run else false()
    hidden = hidden_job_types(user)
    if hidden:
        hidden_jobs = select(Job.id).where(Job.job_type.in_(hidden))
        hidden_runs = select(Run.id).where(Run.job_id.in_(hidden_jobs))
        about_jobs = and_(about_jobs, not_(or_(
            and_(AuditEvent.object_type == "job", _is_in(AuditEvent.object_id, hidden_jobs)),
            and_(AuditEvent.object_type == "run", _is_in(AuditEvent.object_id, hidden_runs)),
            _is_in(AuditEvent.run_id, hidden_runs))))
    about_queues = AuditEvent.object_type == "queue" if can_manage_queues(user) else false()
    return select(AuditEvent).where(or_(own, about_jobs, about_queues))


def _is_in(column, subquery):
    """`column IN subquery`, false (not NULL) where the column is NULL, so that NOT keeps the row."""
    return and_(column.isnot(None), column.in_(subquery))
