"""All models, imported here so that Alembic and the app see the whole schema."""
from webapp.models.accounts import ApiToken, Domain, Role, User, UserSession  # noqa: F401
from webapp.models.audit import AuditEvent  # noqa: F401
from webapp.models.jobs import Job, JobState, Scope  # noqa: F401
from webapp.models.runs import LogRead, Run, RunFile, RunLogLine, RunStatus, Trigger  # noqa: F401
from webapp.models.settings import Setting  # noqa: F401
from webapp.models.notifications import DeliveryStatus, EmailDelivery  # noqa: F401
from webapp.models.queues import QueueState  # noqa: F401
from webapp.models.scripts import ScriptVersion  # noqa: F401
from webapp.models.linkage import (  # noqa: F401
    Envelope, EnvelopeNotification, EnvelopeStatus, LinkageMatch, LinkageRecord,
)
from webapp.models.clinical import (  # noqa: F401
    ClinicalOid, ClinicalRecord, Dataset, DatasetItem, ExportFormat, ItemDef, ItemValue, OidKind, Subject,
)
