"""Domains as a tree: create, rename, move under another parent (never under itself or below
it), and delete only a domain nothing refers to. Each change is audited under `actor`."""
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import AuditEvent, Dataset, Domain, Job, Subject, User
from webapp.models.accounts import supervision
from webapp.models.audit import record
from webapp.models.linkage import LINKAGE_KIND, Envelope

CLINICAL_KIND = "clinical"
KINDS = {CLINICAL_KIND: "Clinical (a study or a site)", LINKAGE_KIND: "Linkage project (envelopes of person records)"}


class DomainError(ValueError):
    """A refusal in words, and the form field it is about."""

    def __init__(self, message, field="name"):
        super().__init__(message)
        self.message, self.field = message, field


@dataclass
class Node:
    domain: Domain
    depth: int
    jobs: int = 0
    users: int = 0
    children: list = field(default_factory=list)


def tree() -> list[Node]:
    """Every domain, roots first and children under their parent, by name; with the number of
    live jobs and of users (of the domain itself) on each. Three queries, whatever the size."""
    domains = db.session.scalars(select(Domain).order_by(Domain.name)).all()
    jobs = dict(db.session.execute(select(Job.domain_id, func.count(Job.id)).where(Job.deleted_at.is_(None))
                                   .group_by(Job.domain_id)).all())
    users = dict(db.session.execute(select(User.domain_id, func.count(User.id)).group_by(User.domain_id)).all())
    nodes = {d.id: Node(d, 0, jobs.get(d.id, 0), users.get(d.id, 0)) for d in domains}
    roots = []
    for domain in domains:
        parent = nodes.get(domain.parent_id)
        (parent.children if parent else roots).append(nodes[domain.id])

    def depth(node, level):
        node.depth = level
        for child in node.children:
            depth(child, level + 1)
    for root in roots:
        depth(root, 0)
    return roots


def flat(nodes: list[Node]) -> list[Node]:
    out = []
    for node in nodes:
        out.append(node)
        out.extend(flat(node.children))
    return out


def descendants(domain: Domain) -> set[int]:
    return Domain.subtree_ids({domain.id}) - {domain.id}


def allowed_parents(domain: Domain | None) -> list[Node]:
    """Domains `domain` may move under, in tree order: not itself, not one below it."""
    excluded = set() if domain is None else {domain.id} | descendants(domain)
    return [node for node in flat(tree()) if node.domain.id not in excluded]


def _check_name(name: str, domain: Domain | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise DomainError("Give the domain a name.")
    if len(name) > 120:
        raise DomainError("A domain name has at most 120 characters.")
    clash = select(Domain.id).where(func.lower(Domain.name) == name.lower())
    if domain is not None:
        clash = clash.where(Domain.id != domain.id)
    if db.session.scalar(clash) is not None:
        raise DomainError(f"There is already a domain named “{name}”.")
    return name


OID_MAX = 100  # the column's length


def _check_oid(oid: str | None, domain: Domain | None = None) -> str | None:
    """The domain's OID (StudyOID) as ODM files name it: optional, unique, at most 100
    characters, without spaces or control characters (an OID is compared exactly)."""
    oid = (oid or "").strip()
    if not oid:
        return None
    if len(oid) > OID_MAX:
        raise DomainError(f"An OID has at most {OID_MAX} characters.", "oid")
    if any(char.isspace() or not char.isprintable() for char in oid):
        raise DomainError("An OID has no spaces or control characters: give it as the files' StudyOID has it, "
                          "for example STUDY-A.", "oid")
    clash = select(Domain.name).where(Domain.oid == oid)
    if domain is not None:
        clash = clash.where(Domain.id != domain.id)
    taken_by = db.session.scalar(clash)
    if taken_by is not None:
        raise DomainError(f"The OID “{oid}” is already that of “{taken_by}”: each domain's OID is its own.", "oid")
    return oid


def _check_kind(kind: str | None, domain: Domain | None = None) -> str:
    """What the domain is for. A linkage project that holds envelopes stays one, and a domain that
    holds clinical data cannot become one: either change would leave data where no page shows it."""
    kind = kind or (domain.kind if domain is not None else CLINICAL_KIND)
    if kind not in KINDS:
        raise DomainError("Choose clinical or linkage project.", "kind")
    if domain is None or kind == domain.kind:
        return kind
    if kind == CLINICAL_KIND:
        envelopes = db.session.scalar(select(func.count(Envelope.id)).where(Envelope.project_id == domain.id))
        if envelopes:
            raise DomainError(f"It holds {_count(envelopes, 'envelope', 'envelopes')}: a linkage project with "
                              "envelopes stays one.", "kind")
    else:
        subjects = db.session.scalar(select(func.count(Subject.id)).where(Subject.domain_id == domain.id))
        if subjects:
            raise DomainError(f"It holds clinical data of {_count(subjects, 'subject', 'subjects')}: it cannot become "
                              "a linkage project.", "kind")
    return kind


def _commit(oid: str | None) -> None:
    """Commit; a unique OID taken by another save since the check gets the check's message."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise DomainError(f"The OID “{oid}” was just given to another domain: choose another.", "oid") from None


def _check_parent(domain: Domain | None, parent: Domain | None) -> None:
    if domain is None or parent is None:
        return
    if parent.id == domain.id:
        raise DomainError("A domain cannot be placed under itself.", "parent_id")
    if parent.id in descendants(domain):
        raise DomainError(f"“{parent.name}” is below “{domain.name}”: moving it there would make a loop.",
                          "parent_id")


def _path(domain: Domain | None) -> str:
    names = []
    while domain is not None:
        names.append(domain.name)
        domain = domain.parent
    return " / ".join(reversed(names))


def create(name: str, parent: Domain | None, *, actor, oid: str | None = None, kind: str | None = None) -> Domain:
    name = _check_name(name)
    oid = _check_oid(oid)
    kind = _check_kind(kind)
    domain = Domain(name=name, parent=parent, oid=oid, kind=kind)
    db.session.add(domain)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise DomainError(f"The OID “{oid}” was just given to another domain: choose another.", "oid") from None
    record("create", "domain", domain, actor=actor,
           after={"name": domain.name, "parent": parent.name if parent else "", **({"oid": oid} if oid else {}),
                  **({"kind": kind} if kind != CLINICAL_KIND else {})})
    _commit(oid)
    return domain


def update(domain: Domain, name: str, parent: Domain | None, *, actor, oid: str | None = None,
           kind: str | None = None) -> bool:
    """Rename, move, set the OID and the kind (None: as it is); False when nothing changed."""
    name = _check_name(name, domain)
    oid = _check_oid(oid, domain)
    kind = _check_kind(kind, domain)
    _check_parent(domain, parent)
    before = {"name": domain.name, "parent": domain.parent.name if domain.parent else "", "oid": domain.oid or "",
              "kind": domain.kind}
    after = {"name": name, "parent": parent.name if parent else "", "oid": oid or "", "kind": kind}
    if before == after:
        return False
    domain.name, domain.parent, domain.oid, domain.kind = name, parent, oid, kind
    changed = {key for key in before if before[key] != after[key]}
    # One record a save, named by its biggest change (a move changes who sees the domain's jobs);
    # name and place always, the OID and the kind when they changed.
    action = "move" if "parent" in changed else "rename" if "name" in changed else "edit"
    shown = ("name", "parent") + tuple(key for key in ("oid", "kind") if key in changed)
    record(action, "domain", domain, actor=actor, before={key: before[key] for key in shown},
           after={key: after[key] for key in shown}, message=f"now {_path(domain)}")
    _commit(oid)
    return True


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def why_not_deletable(domain: Domain) -> list[str]:
    """What still refers to the domain, in words; empty when it can be deleted. Each rule is a count
    and what to say of it (n, and "it" or "them" for what to act on)."""
    def them(n):
        return "it" if n == 1 else "them"

    def user(n):
        return "that user" if n == 1 else "them"

    of_domain = domain.id
    rules = [
        (select(func.count(Job.id)).where(Job.domain_id == of_domain, Job.deleted_at.is_(None)),
         lambda n: f"{_count(n, 'job runs', 'jobs run')} in it: move or delete {them(n)} first."),
        (select(func.count(Job.id)).where(Job.domain_id == of_domain, Job.deleted_at.isnot(None)),
         lambda n: f"{_count(n, 'deleted job keeps its', 'deleted jobs keep their')} runs and files under it."),
        (select(func.count(User.id)).where(User.domain_id == of_domain),
         lambda n: f"{_count(n, 'user belongs', 'users belong')} to it: give {user(n)} another domain first."),
        (select(func.count()).select_from(supervision).where(supervision.c.domain_id == of_domain),
         lambda n: f"{_count(n, 'system administrator supervises', 'system administrators supervise')} it: "
                   f"take it from {user(n)} first."),
        (select(func.count(Dataset.id)).where(Dataset.domain_id == of_domain),
         lambda n: f"{_count(n, 'dataset is', 'datasets are')} defined on it: delete {them(n)} first."),
        (select(func.count(Subject.id)).where(Subject.domain_id == of_domain),
         lambda n: f"It holds clinical data of {_count(n, 'subject', 'subjects')}."),
        (select(func.count(Envelope.id)).where(Envelope.project_id == of_domain),
         lambda n: f"It holds {_count(n, 'envelope', 'envelopes')} of person records."),
        (select(func.count(Domain.id)).where(Domain.parent_id == of_domain),
         lambda n: f"{_count(n, 'domain is', 'domains are')} below it: move or delete {them(n)} first."),
        (select(func.count(AuditEvent.id)).where(AuditEvent.domain_id == of_domain),
         lambda n: f"{_count(n, 'audit record names', 'audit records name')} it, and audit records are kept for good."),
    ]
    return [say(n) for query, say in rules if (n := db.session.scalar(query))]


def delete(domain: Domain, *, actor) -> None:
    reasons = why_not_deletable(domain)
    if reasons:
        raise DomainError(f"“{domain.name}” cannot be deleted: " + " ".join(reasons))
    # Records about a domain itself name it by object id, not by the domain_id reference, so
    # they outlive it (audit records are never changed).
    record("delete", "domain", domain, actor=actor, before={"name": domain.name, "parent": _path(domain.parent)})
    db.session.delete(domain)
    db.session.commit()
