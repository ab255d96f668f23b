"""Run report emails end to end: real worker and scheduler processes, a real SMTP server
(aiosmtpd) on a free port, and the mail server down, hanging or back again."""
import email
import socket
import time
from datetime import timedelta
from email import policy
from zoneinfo import ZoneInfo

import pytest
import redis as redis_lib
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from tests.conftest import free_port, wait_for
from tests.factories import make_job, make_user
from tests.integration.test_engine import final
from webapp.execution import dispatch, notify
from webapp.execution.lifecycle import finish_run
from webapp.extensions import db
from webapp.models import EmailDelivery, Run, RunFile, RunStatus, Trigger
from webapp.models.notifications import DeliveryStatus
from webapp.models.types import utcnow

BASE_URL = "http://firetime.example:8080/console"
RECIPIENTS = "ops@example.org, Lead@Example.org ,ops@example.org,"
EXPECTED = ["ops@example.org", "Lead@Example.org"]


class Inbox:
    """aiosmtpd handler: keeps every message it is given."""

    def __init__(self):
        self.received = []  # (envelope recipients, parsed message)

    async def handle_DATA(self, server, session, envelope):
        self.received.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content,
                                                                                 policy=policy.default)))
        return "250 OK"

    def to(self, address):
        return [message for rcpts, message in self.received if address in rcpts]


class SmtpServer:
    def __init__(self, port):
        self.port = port
        self.inbox = Inbox()
        self.controller = None

    def start(self):
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        if self.controller:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    server = SmtpServer(free_port())
    yield server
    server.stop()


def mail_env(port, delays="1,1,1,1,1,1,1,1"):
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(port), "MAIL_TIMEOUT": "1",
            "MAIL_DEFAULT_SENDER": "firetime@test.example", "FIRETIME_MAIL_RETRY_DELAYS": delays,
            "FIRETIME_BASE_URL": BASE_URL}


@pytest.fixture
def start_worker(app, start_process, redis_server):
    """A real worker process (all queues, the mail queue included) with the given settings."""
    from rq import Worker

    def start(env):
        conn = redis_lib.Redis.from_url(redis_server.url)
        before = len(Worker.all(connection=conn))
        process = start_process(env=env)
        wait_for(lambda: len(Worker.all(connection=conn)) > before or process.proc.poll() is not None, 30,
                 message="worker start")
        assert process.proc.poll() is None, process.output()
        assert "mail" in Worker.all(connection=conn)[0].queue_names()
        return process

    return start


def reported_job(**params):
    return make_job(name="Nightly import", report_enabled=True, report_recipients=RECIPIENTS,
                    params={"duration": 0, "lines_per_second": 0, **params})


def deliveries(run_id):
    db.session.expire_all()
    return db.session.scalars(select(EmailDelivery).where(EmailDelivery.run_id == run_id)
                              .order_by(EmailDelivery.id)).all()


def all_sent(run_id):
    rows = deliveries(run_id)
    return rows and all(d.status == DeliveryStatus.SENT for d in rows)


def text_and_html(message):
    return tuple(message.get_body((kind,)).get_content().replace("\r\n", "\n") for kind in ("plain", "html"))


def test_succeeded_run_mails_every_recipient_once(ctx, smtp, start_worker):
    smtp.start()
    start_worker(mail_env(smtp.port))
    job = reported_job(output_csv=True)
    run = final(dispatch.request_run(job, trigger=Trigger.HAND, user=make_user()).id)
    assert run.status == RunStatus.SUCCEEDED
    wait_for(lambda: all_sent(run.id), 15, message="report emails sent")
    assert [d.recipient for d in deliveries(run.id)] == EXPECTED
    assert all(d.attempts == 1 and d.sent_at and d.last_error == "" for d in deliveries(run.id))
    assert len(smtp.inbox.received) == 2
    file = db.session.scalar(select(RunFile).where(RunFile.run_id == run.id))
    for address in EXPECTED:
        (message,) = smtp.inbox.to(address)
        assert message["Subject"] == f"[Firetime] Nightly import: Succeeded (run #{run.id})"
        assert message["To"] == address and message["From"] == "firetime@test.example"
        assert message["Auto-Submitted"] == "auto-generated"
        text, html = text_and_html(message)
        assert "Status:    Succeeded" in text and "Errors:    0" in text and "Warnings:  0" in text
        # Start and end in the server's time zone (Europe/Amsterdam in the tests).
        started = run.started_at.astimezone(ZoneInfo("Europe/Amsterdam"))
        assert f"Started:   {started:%Y-%m-%d %H:%M:%S %Z}" in text
        assert f"{BASE_URL}/runs/{run.id}" in text and f'href="{BASE_URL}/runs/{run.id}"' in html
        assert "selftest.csv" in text and f"{BASE_URL}/runs/files/{file.id}" in text
        assert f'href="{BASE_URL}/runs/files/{file.id}"' in html
        assert "First error" not in text


def test_sender_and_links_follow_the_settings_an_administrator_saved(ctx, smtp, start_worker):
    """The environment gives the defaults; what a superadmin saved on the settings page wins."""
    from webapp.models import Setting

    db.session.add_all([Setting(key="report_sender", value="reports@saved.example"),
                        Setting(key="base_url", value="https://console.saved.example/ft")])
    db.session.commit()
    smtp.start()
    start_worker(mail_env(smtp.port))
    run = final(dispatch.request_run(reported_job(), trigger=Trigger.HAND, user=make_user()).id)
    wait_for(lambda: all_sent(run.id), 15, message="report emails sent")
    message = smtp.inbox.to(EXPECTED[0])[0]
    assert message["From"] == "reports@saved.example"
    text, html = text_and_html(message)
    assert f"https://console.saved.example/ft/runs/{run.id}" in text and BASE_URL not in text


def test_failed_run_mails_the_first_error_and_no_header_can_be_injected(ctx, smtp, start_worker):
    smtp.start()
    start_worker(mail_env(smtp.port))
    job = reported_job(fail_at_end=True)
    job.name = "Nightly import\r\nBcc: victim@example.org"  # a name with a line break in it
    db.session.commit()
    run = final(dispatch.request_run(job).id)
    assert run.status == RunStatus.FAILED
    wait_for(lambda: all_sent(run.id), 15, message="report emails sent")
    assert sorted(r for rcpts, _ in smtp.inbox.received for r in rcpts) == sorted(EXPECTED)
    for address in EXPECTED:
        (message,) = smtp.inbox.to(address)
        assert message["Subject"] == f"[Firetime] Nightly import Bcc: victim@example.org: Failed (run #{run.id})"
        assert message["Bcc"] is None
        text, html = text_and_html(message)
        assert "Status:    Failed" in text and "Errors:    1" in text
        assert "First error:\n  SelfTestFailure: The self-test was asked to fail at the end." in text
        assert "SelfTestFailure: The self-test was asked to fail at the end." in html
        assert f"{BASE_URL}/runs/{run.id}" in text and "Output files" not in text


def test_job_without_reporting_sends_nothing(ctx, smtp, start_worker):
    smtp.start()
    start_worker(mail_env(smtp.port))
    quiet = make_job(report_enabled=False, report_recipients="ops@example.org")
    run = final(dispatch.request_run(quiet).id)
    assert run.status == RunStatus.SUCCEEDED
    assert deliveries(run.id) == [] and notify.report_run(run.id) == []
    # A skipped occurrence of a reported job is not reported either.
    job = reported_job()
    skipped = Run(job_id=job.id, trigger=Trigger.PLAN, status=RunStatus.SKIPPED, finished_at=utcnow())
    db.session.add(skipped)
    db.session.commit()
    assert notify.report_run(skipped.id) == [] and deliveries(skipped.id) == []
    # A reported run after them: once its mails are in, nothing else came.
    reported = final(dispatch.request_run(job).id)
    wait_for(lambda: all_sent(reported.id), 15, message="report emails sent")
    assert len(smtp.inbox.received) == 2


def test_hanging_mail_server_never_holds_the_run_and_a_retry_delivers(ctx, client, login_as, smtp,
                                                                        start_worker, start_process):
    # Something accepts connections on the port but never says a word: each attempt times out.
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", smtp.port))
    hanging.listen(8)
    try:
        start_process("scheduler")  # moves the scheduled retries onto the mail queue
        start_worker(mail_env(smtp.port))
        login_as(make_user(username="boss"))
        job = reported_job()
        requested = time.monotonic()
        run = final(dispatch.request_run(job).id, timeout=10)
        assert run.status == RunStatus.SUCCEEDED
        assert time.monotonic() - requested < 5 and run.duration < timedelta(seconds=2)

        def first_attempt_failed():
            rows = deliveries(run.id)
            return all(d.attempts >= 1 and d.last_error for d in rows) and rows

        rows = wait_for(first_attempt_failed, 15, message="a failed attempt")
        assert all(d.status == DeliveryStatus.PENDING for d in rows)
        assert "Could not reach the mail server 127.0.0.1" in rows[0].last_error
        assert "timed out" in rows[0].last_error
        page = client.get(f"/runs/{run.id}").get_data(as_text=True)
        assert "Report email" in page and "ops@example.org" in page and "Pending" in page
        assert "timed out" in page
        assert db.session.get(Run, run.id, populate_existing=True).status == RunStatus.SUCCEEDED
    finally:
        hanging.close()
    smtp.start()  # the mail server is back on its port
    wait_for(lambda: all_sent(run.id), 20, message="the retry to deliver")
    for address in EXPECTED:
        assert len(smtp.inbox.to(address)) == 1
    assert all(d.attempts >= 2 for d in deliveries(run.id))
    page = client.get(f"/runs/{run.id}").get_data(as_text=True)
    assert "Sent" in page and "timed out" not in page


def test_delivery_fails_for_good_after_the_last_retry(ctx, client, login_as, start_worker, start_process):
    nothing_there = free_port()
    start_process("scheduler")
    start_worker(mail_env(nothing_there, delays="1"))
    login_as(make_user(username="boss"))
    job = reported_job()
    run = final(dispatch.request_run(job).id)
    assert run.status == RunStatus.SUCCEEDED

    def given_up():
        rows = deliveries(run.id)
        return all(d.status == DeliveryStatus.FAILED for d in rows) and rows

    rows = wait_for(given_up, 20, message="the delivery to fail")
    assert [d.attempts for d in rows] == [2, 2] and all(d.next_attempt_at is None for d in rows)
    assert "Connection refused" in rows[0].last_error
    page = client.get(f"/runs/{run.id}").get_data(as_text=True)
    assert "Report email" in page and "Failed" in page and "after 2 attempts" in page
    assert "Connection refused" in page


def test_finishing_twice_and_queueing_twice_send_one_mail(ctx, smtp, start_worker):
    smtp.start()
    job = reported_job()
    run = dispatch.request_run(job)  # no worker yet: it waits in RQ
    assert dispatch.cancel_run(run) == "cancelled"
    assert finish_run(run.id, RunStatus.FAILED, "a second finish") is False
    assert notify.report_run(run.id) == []  # rows exist: nothing new is queued
    rows = deliveries(run.id)
    assert [d.recipient for d in rows] == EXPECTED
    for d in rows:  # the same delivery handed to the mail queue twice more
        assert notify._enqueue(d.id, 0) and notify._enqueue(d.id, 0)
    start_worker(mail_env(smtp.port))
    wait_for(lambda: all_sent(run.id), 15, message="report emails sent")
    # The extra copies of the job are worked too, and send nothing: wait until the worker has
    # taken every copy off the mail queue and is idle again, then count.
    wait_for(mail_queue_drained, 15, message="every copy worked")
    assert db.session.scalar(select(func.count()).select_from(EmailDelivery)) == 2
    for address in EXPECTED:
        (message,) = smtp.inbox.to(address)
        assert message["Subject"] == f"[Firetime] Nightly import: Cancelled (run #{run.id})"
        assert "Note:\n  Cancelled by system before it started." in text_and_html(message)[0]
    assert all(d.attempts == 1 for d in deliveries(run.id))


def mail_queue_drained() -> bool:
    from rq import Queue, Worker
    from rq.registry import StartedJobRegistry

    from webapp.extensions import redis_client

    conn = redis_client.conn
    queue = Queue(notify.MAIL_QUEUE, connection=conn)
    return (queue.count == 0 and not StartedJobRegistry(queue=queue).get_job_ids(cleanup=False)
            and all(worker.get_state() == "idle" for worker in Worker.all(connection=conn)))


def test_redis_away_at_the_end_of_a_run_leaves_deliveries_for_the_sweep(ctx, smtp, start_worker, monkeypatch):
    smtp.start()
    job = reported_job()
    run = dispatch.request_run(job)
    dead = redis_lib.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    with monkeypatch.context() as patch:
        patch.setitem(ctx.extensions, "redis", dead)
        assert finish_run(run.id, RunStatus.FAILED, "Ended while Redis was away.") is True
        assert notify.sweep(utcnow() + timedelta(minutes=5)) == 0  # still away: nothing, no error
    rows = deliveries(run.id)
    assert [(d.status, d.attempts) for d in rows] == [(DeliveryStatus.PENDING, 0)] * 2
    assert notify.sweep() == 0  # not overdue yet
    later = utcnow() + timedelta(minutes=1)
    assert notify.sweep(later) == 2
    assert notify.sweep(later) == 0  # already on the mail queue: not queued twice
    start_worker(mail_env(smtp.port))
    wait_for(lambda: all_sent(run.id), 15, message="report emails sent")
    assert len(smtp.inbox.received) == 2


def test_recipients_and_subjects_are_cleaned():
    assert notify.parse_recipients(" a@x.org,, B@y.org ;b@Y.org,a@x.org ") == ["a@x.org", "B@y.org"]
    assert notify.header_safe("Nightly\r\nBcc: x@y\x00 import") == "Nightly Bcc: x@y import"
    assert notify._invalid("a@x.org") == "" and notify._invalid("a@x.org\nBcc: b@y") != ""
    assert notify._invalid("no-at-sign") != "" and notify._invalid("a@" + "x" * 260) != ""
