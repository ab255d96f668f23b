"""How Firetime names the RQ jobs of its runs and reads an RQ job's state: the one place for
the run job id prefix and the one status helper (housekeeping and the mail sweep both ask)."""
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob

from webapp.extensions import redis_client

RUN_PREFIX = "firetime-run-"
RUNNER = "webapp.execution.runner.execute"  # what a run's RQ job calls


def run_job_id(run_id: int) -> str:
    return f"{RUN_PREFIX}{run_id}"


def run_id_of(rq_job_id: str) -> int | None:
    """The run an RQ job id belongs to, or None for other jobs (report emails, say)."""
    return int(rq_job_id[len(RUN_PREFIX):]) if rq_job_id.startswith(RUN_PREFIX) else None


def rq_status(rq_job_id: str):
    """The RQ job's status as last saved, or None if Redis no longer has the job."""
    try:
        return RQJob.fetch(rq_job_id, connection=redis_client.conn).get_status(refresh=False)
    except NoSuchJobError:
        return None
