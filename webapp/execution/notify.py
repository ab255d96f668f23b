"""Run report emails (SPEC 7): when a run of a job with reporting on ends, each recipient
gets one email, sent from the "mail" queue by the normal workers.

- `report_run(run_id)` is called by `runner.finish_run` once the run's end is committed. It
  inserts one `EmailDelivery` row per recipient (the unique (run, recipient) makes it
  idempotent) and puts one `deliver` job per new row on the mail queue. It never raises:
  Redis away leaves the rows pending, and `sweep()` hands them over later.
- `deliver(delivery_id)` runs in a work horse: it takes the delivery (a conditional UPDATE, so
  two copies of the job send one mail), sends it over SMTP with a short timeout and records
  the outcome. A failure is retried after each delay of MAIL_RETRY_DELAYS, through
  rq-scheduler (`enqueue_at`; the scheduler process moves the entry onto the mail queue);
  after the last one the delivery is failed. The run itself is never touched.
- `sweep()` is for the scheduler's housekeeping: pending deliveries well past their time
  (queueing failed, Redis lost a scheduled retry, a sender died mid-send) are queued again.
"""
import logging
import smtplib
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app, render_template
from flask_mailman import BadHeaderError, EmailMultiAlternatives
from redis.exceptions import RedisError
from rq import Queue
from rq.job import JobStatus
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from webapp.execution.rqjobs import rq_status
from webapp.extensions import db, redis_client
from webapp.jobtypes.registry import MAIL_QUEUE
from webapp.mail_addresses import parse_recipients
from webapp.models import Job, Run, RunLogLine, RunStatus
from webapp.models.notifications import DeliveryStatus, EmailDelivery, MailKind
from webapp.models.settings import get_setting
from webapp.models.types import utcnow

log = logging.getLogger(__name__)
SENDER = "webapp.execution.notify.deliver"
JOB_PREFIX = "firetime-mail-"
# rq-scheduler rounds times down to whole seconds: a retry may start up to ~1 s early.
EARLY = timedelta(seconds=2)
# A pending delivery this far past its time was not handed to a worker: the sweep queues it.
SWEEP_GRACE = timedelta(seconds=30)
MAX_RECIPIENT = 254
BUSY = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED}
# Every final status but skipped: a skipped occurrence never ran.
_REPORTED = {RunStatus.SUCCEEDED, RunStatus.WARNINGS, RunStatus.FAILED, RunStatus.CANCELLED}

# --- queueing ---------------------------------------------------------------------------

def _invalid(address: str) -> str:
    """Why an address cannot be mailed, or '' (the job form validates; this guards the rest)."""
    if len(address) > MAX_RECIPIENT:
        return "Not a valid email address (too long)."
    if any(ch.isspace() or not ch.isprintable() for ch in address) or address.count("@") != 1 \
            or not all(address.split("@")):
        return "Not a valid email address."
    return ""


def report_run(run_id: int) -> list[int]:
    """Create and queue the report emails of a run that has just ended; returns the ids of the
    deliveries it queued. Safe to call more than once, and never raises: an email problem must
    never change how the run ended."""
    try:
        new = _create_deliveries(run_id)
    except Exception:
        log.exception("could not create the report emails of run=%s", run_id)
        db.session.rollback()
        return []
    queued = []
    try:
        for delivery_id in new:
            if not _enqueue(delivery_id, 0):
                break  # Redis away: the rest stay pending too, and the sweep queues them
            queued.append(delivery_id)
    except Exception:
        log.exception("could not queue the report emails of run=%s; the sweep will", run_id)
    return queued


def _create_deliveries(run_id: int) -> list[int]:
    row = db.session.execute(
        select(Run.status, Job.report_enabled, Job.report_recipients)
        .join(Job, Run.job_id == Job.id).where(Run.id == run_id)
    ).first()
    if row is None or not row.report_enabled or row.status not in _REPORTED:
        db.session.commit()  # end the read transaction
        return []
    recipients = parse_recipients(row.report_recipients)
    existing = set(db.session.scalars(select(EmailDelivery.recipient).where(EmailDelivery.run_id == run_id,
                                                                     EmailDelivery.kind == MailKind.REPORT)))
    now = utcnow()
    new = []
    for address in recipients:
        stored = address[:MAX_RECIPIENT]
        if stored in existing:
            continue
        problem = _invalid(address)
        if problem:
            new.append(EmailDelivery(run_id=run_id, recipient=stored, status=DeliveryStatus.FAILED,
                                     last_error=problem))
        else:
            new.append(EmailDelivery(run_id=run_id, recipient=stored, next_attempt_at=now))
    if not new:
        db.session.commit()
        return []
    db.session.add_all(new)
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent call created them first: that one queues them
        db.session.rollback()
        return []
    log.info("report emails run=%s recipients=%s", run_id, len(new))
    return [d.id for d in new if d.status == DeliveryStatus.PENDING]


def tell_superadmins_paused(queue: str, run_id: int) -> list[int]:
    """Email each superadmin that the failed run paused its queue (pause on failure); like a
    report, rows first, then the mail queue. Never raises; returns the deliveries queued."""
    from webapp.execution.queues import superadmins

    try:
        now = utcnow()
        new = [EmailDelivery(run_id=run_id, recipient=user.email[:MAX_RECIPIENT], kind=MailKind.QUEUE_PAUSED,
                             next_attempt_at=now) for user in superadmins() if not _invalid(user.email)]
        db.session.add_all(new)
        db.session.commit()
    except Exception:  # sent once: a second pause of the same run finds them (IntegrityError)
        log.exception("could not create the queue-paused emails queue=%s run=%s", queue, run_id)
        db.session.rollback()
        return []
    log.info("queue paused emails queue=%s run=%s recipients=%s", queue, run_id, len(new))
    return [delivery.id for delivery in new if _enqueue(delivery.id, 0)]


def rq_job_id(delivery_id: int, attempts: int) -> str:
    """One RQ job id per attempt, so a retry never overwrites the job of the attempt before."""
    return f"{JOB_PREFIX}{delivery_id}-{attempts}"


def _job_timeout() -> int:
    # Each SMTP step (connect, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, QUIT) may take the timeout.
    return 10 * current_app.config["MAIL_TIMEOUT"] + 30


def _lease() -> timedelta:
    """How long a sender holds a delivery: longer than RQ lets the send job live."""
    return timedelta(seconds=2 * _job_timeout())


def _enqueue(delivery_id: int, attempts: int) -> bool:
    try:
        Queue(MAIL_QUEUE, connection=redis_client.conn).enqueue(
            SENDER, delivery_id, job_id=rq_job_id(delivery_id, attempts), job_timeout=_job_timeout(),
            result_ttl=600, failure_ttl=7 * 86400, description=f"report email {delivery_id}")
        return True
    except RedisError as exc:
        log.warning("could not queue report email delivery=%s (%s); the sweep will", delivery_id, exc)
        return False


def _schedule_retry(delivery_id: int, attempts: int, at) -> bool:
    """Through rq-scheduler, not RQ's Retry: the scheduler process moves the entry onto the
    mail queue when it is due (RQ's own ScheduledJobRegistry is never read here)."""
    from webapp.scheduling.sync import scheduler

    try:
        scheduler().enqueue_at(at, SENDER, delivery_id, job_id=rq_job_id(delivery_id, attempts),
                               queue_name=MAIL_QUEUE, timeout=_job_timeout(), job_result_ttl=600,
                               job_description=f"report email {delivery_id}, retry {attempts}")
        return True
    except RedisError as exc:
        log.warning("could not schedule the retry of delivery=%s (%s); the sweep will", delivery_id, exc)
        return False


def sweep(now=None, limit: int = 200) -> int:
    """Queue again the pending deliveries well past their time: those whose queueing failed
    (Redis away when the run ended or when a retry was scheduled), whose scheduled retry Redis
    lost, or whose sender died mid-send (its lease ran out). Cheap when there are none (one
    indexed query); meant for the scheduler's housekeeping. Returns how many it queued."""
    now = now or utcnow()
    rows = db.session.execute(
        select(EmailDelivery.id, EmailDelivery.attempts)
        .where(EmailDelivery.status == DeliveryStatus.PENDING, EmailDelivery.next_attempt_at < now - SWEEP_GRACE)
        .order_by(EmailDelivery.next_attempt_at).limit(limit)
    ).all()
    db.session.commit()
    queued = 0
    for delivery_id, attempts in rows:
        job_id = rq_job_id(delivery_id, attempts)
        try:
            if rq_status(job_id) in BUSY:
                continue  # waiting behind other work on the mail queue, or being sent
            from webapp.scheduling.sync import scheduler

            scheduler().cancel(job_id)  # an overdue rq-scheduler entry: queue it here instead
        except RedisError:
            break
        if not _enqueue(delivery_id, attempts):
            break
        queued += 1
    if queued:
        log.info("mail sweep queued=%s", queued)
    return queued


# --- sending ----------------------------------------------------------------------------

def deliver(delivery_id: int) -> str:
    """The mail queue's job: send one report email, record the outcome, arrange a retry.
    It never raises, so failed deliveries are in the database, not in RQ's failed registry."""
    now = utcnow()
    taken = db.session.execute(
        update(EmailDelivery)
        .where(EmailDelivery.id == delivery_id, EmailDelivery.status == DeliveryStatus.PENDING,
               EmailDelivery.next_attempt_at <= now + EARLY)
        .values(attempts=EmailDelivery.attempts + 1, next_attempt_at=now + _lease())
    )
    db.session.commit()
    if taken.rowcount != 1:
        return "nothing to do"  # sent, given up, or another copy of this job has it
    delivery = db.session.get(EmailDelivery, delivery_id)
    try:
        _send(build_message(delivery))
    except Exception as exc:
        db.session.rollback()
        return _attempt_failed(delivery_id, exc)
    db.session.execute(update(EmailDelivery).where(EmailDelivery.id == delivery_id).values(
        status=DeliveryStatus.SENT, sent_at=utcnow(), next_attempt_at=None, last_error=""))
    db.session.commit()
    log.info("report email sent delivery=%s run=%s", delivery_id, delivery.run_id)
    return "sent"


def _send(message) -> None:
    connection = _mail_state().get_connection()
    try:
        connection.open()
        connection.send_messages([message])
    finally:
        try:
            connection.close()
        except Exception:  # the mail was accepted; a failed QUIT must not send it again
            log.warning("closing the SMTP connection failed", exc_info=True)


def _attempt_failed(delivery_id: int, exc: Exception) -> str:
    delivery = db.session.get(EmailDelivery, delivery_id, populate_existing=True)
    delays = current_app.config["MAIL_RETRY_DELAYS"]
    error = describe_error(exc)[:2000]
    delivery.last_error = error
    if _permanent(exc) or delivery.attempts > len(delays):
        delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
        db.session.commit()
        log.warning("report email failed for good delivery=%s attempts=%s: %s", delivery_id,
                    delivery.attempts, error)
        return "failed"
    retry_at = (utcnow() + timedelta(seconds=delays[delivery.attempts - 1])).replace(microsecond=0)
    delivery.next_attempt_at = retry_at
    attempts = delivery.attempts
    db.session.commit()
    log.warning("report email attempt %s failed delivery=%s, retry at %s: %s", attempts, delivery_id,
                retry_at.isoformat(), error)
    _schedule_retry(delivery_id, attempts, retry_at)
    return "retry"


def describe_error(exc: Exception) -> str:
    config = current_app.config
    server = f"{config['MAIL_SERVER']}:{config['MAIL_PORT']}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(f"{code} {_text(msg)}" for code, msg in exc.recipients.values())
        return f"The mail server {server} refused the recipient: {refused}"
    if isinstance(exc, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)):
        return f"Could not reach the mail server {server}: {exc}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"The mail server {server} answered {exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPException):
        return f"Mail server {server}: {type(exc).__name__}: {exc}"
    if isinstance(exc, OSError):  # refused, unreachable, timed out, TLS
        return f"Could not reach the mail server {server}: {exc or type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _permanent(exc: Exception) -> bool:
    """Retrying cannot help: the server refused the address or the message for good (5xx),
    or the message cannot be built."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPDataError):
        return exc.smtp_code >= 500
    return isinstance(exc, (BadHeaderError, UnicodeError))


# --- the message ------------------------------------------------------------------------

def _mail_state():
    return current_app.extensions["mailman"]


def header_safe(text: str, limit: int = 150) -> str:
    """One line of printable text: no CR, LF or other control character reaches a header."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text or "").split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def subject_for(run: Run) -> str:
    return f"[Firetime] {header_safe(run.job.name)}: {run.status_label} (run #{run.id})"


def absolute_url(endpoint: str, **values) -> str:
    """An absolute link from the base URL setting (workers have no request to take a host from)."""
    base = urlsplit(get_setting("base_url"))
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/", url_scheme=base.scheme or "http")
    return adapter.build(endpoint, values, force_external=True)


def first_error(run: Run) -> str:
    if run.status == RunStatus.FAILED and run.message:
        return run.message
    if run.error_count:
        return db.session.scalar(
            select(RunLogLine.message).where(RunLogLine.run_id == run.id, RunLogLine.level == "error")
            .order_by(RunLogLine.seq).limit(1)) or ""
    return ""


def report_context(run: Run) -> dict:
    error = first_error(run)
    return {
        "run": run,
        "job": run.job,
        "job_name": header_safe(run.job.name, 500),
        "first_error": error[:2000],
        # A cancel note, a lost-worker reason, dropped log lines: shown when not the first error.
        "note": run.message if run.message and run.message != error else "",
        "run_url": absolute_url("runs.detail", run_id=run.id),
        "files": [(file, absolute_url("runs.download", file_id=file.id)) for file in run.files],
        "timezone": current_app.config["TIMEZONE"],
    }


def paused_context(run: Run) -> dict:
    from webapp.execution.queues import queue_of, state

    queue = queue_of(run.job.job_type) or "?"
    row = state(queue)
    return {**report_context(run), "queue": queue, "still_paused": row is not None and row.paused,
            "reason": row.reason if row is not None else "",
            "queues_url": absolute_url("queues.index")}


def build_message(delivery: EmailDelivery) -> EmailMultiAlternatives:
    state = _mail_state()
    run = delivery.run
    if delivery.kind == MailKind.QUEUE_PAUSED:
        context, template = paused_context(run), "mail/queue_paused"
        subject = f"[Firetime] Queue {header_safe(context['queue'], 64)} paused: run #{run.id} of " \
                  f"{header_safe(run.job.name)} failed"
    else:
        context, template, subject = report_context(run), "mail/run_report", subject_for(run)
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_template(f"{template}.txt", **context),
        from_email=get_setting("report_sender") or state.default_sender,
        to=[delivery.recipient],
        headers={"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All",
                 "X-Firetime-Run": str(run.id)},
    )
    message.attach_alternative(render_template(f"{template}.html", **context), "text/html")
    return message
