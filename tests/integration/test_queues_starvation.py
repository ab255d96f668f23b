"""No starvation: with the workers the Procfile starts, system and mail work starts at once while
the default queue is full of long runs (one worker serving every queue, default first, made an
activity report and its email wait minutes behind self-tests)."""
import shlex
import time

from sqlalchemy import select

from tests.conftest import ROOT, wait_for
from tests.factories import make_job
from tests.integration.test_email import mail_env, smtp  # noqa: F401  (the SMTP server fixture)
from webapp.devrun import read_procfile
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.models import EmailDelivery, Run, RunStatus
from webapp.models.notifications import DeliveryStatus

LONG = 30  # seconds each self-test run takes
PATIENCE = 2.0  # seconds system and mail work may wait


def worker_lines() -> dict[str, list[str]]:
    """The worker processes of the Procfile: name -> the arguments after `python worker.py`."""
    lines = {}
    for name, command in read_procfile(ROOT / "Procfile").items():
        words = shlex.split(command)
        if words[:2] == ["python", "worker.py"] and "scheduler" not in words:
            lines[name] = words[2:]
    return lines


def test_the_procfile_serves_system_and_mail_apart_from_job_queues():
    lines = worker_lines()
    served = {name: args[args.index("--queues") + 1].split(",") for name, args in lines.items()}
    dedicated = [name for name, queues in served.items() if set(queues) == {"system", "mail"}]
    assert dedicated, f"no worker serves only the system and mail queues: {served}"
    assert any("default" in queues and "system" not in queues for queues in served.values()), served


def test_system_and_mail_start_within_two_seconds_behind_a_full_default_queue(ctx, smtp, start_process,  # noqa: F811
                                                                              redis_server):
    import redis as redis_lib
    from rq import Worker

    smtp.start()
    conn = redis_lib.Redis.from_url(redis_server.url)
    lines = worker_lines()
    processes = [start_process(*args, env=mail_env(smtp.port)) for args in lines.values()]
    wait_for(lambda: len(Worker.all(connection=conn)) == len(lines), 30, message="the Procfile's workers")
    assert all(process.proc.poll() is None for process in processes)

    long_runs = [dispatch.request_run(make_job(f"Long self-test {n}", params={"duration": LONG, "lines_per_second": 1}))
                 for n in range(4)]

    def started(run_id):
        db.session.expire_all()
        run = db.session.get(Run, run_id)
        return run if run.started_at else None

    wait_for(lambda: started(long_runs[0].id), 15, message="the first long run to start")
    db.session.expire_all()
    assert db.session.scalar(select(Run).where(Run.id == long_runs[-1].id)).status == RunStatus.QUEUED

    report = make_job("Activity report", job_type="system.activity_report", params={},
                      report_enabled=True, report_recipients="ops@example.org")
    queued = time.monotonic()
    run = dispatch.request_run(report)
    begun = wait_for(lambda: started(run.id), 10, interval=0.05, message="the system run to start")
    waited = (begun.started_at - begun.enqueued_at).total_seconds()
    assert waited < PATIENCE, f"the system run waited {waited:.2f} s"

    def delivery():
        db.session.expire_all()
        return db.session.scalar(select(EmailDelivery).where(EmailDelivery.run_id == run.id))
    mail = wait_for(delivery, 10, interval=0.05, message="its report email to be queued")
    wait_for(lambda: smtp.inbox.to("ops@example.org"), 10, interval=0.05, message="the report email")
    # The server has the mail before the sender records it sent: wait for the record.
    mail = wait_for(lambda: (found := delivery()).status == DeliveryStatus.SENT and found, 5, interval=0.05,
                    message="the delivery recorded as sent")
    mail_wait = (mail.sent_at - mail.created_at).total_seconds()
    assert mail_wait < PATIENCE, f"the report email waited {mail_wait:.2f} s"
    assert time.monotonic() - queued < 2 * PATIENCE + 5  # run and email together, not after a self-test
    db.session.expire_all()
    assert db.session.get(Run, long_runs[1].id).status == RunStatus.QUEUED  # the default queue is still full
