"""Command line: users and tokens, demo data, run a job by name, show and steer queues."""
import sys

import click
from flask.cli import AppGroup

from webapp.extensions import db, redis_client
from webapp.models import ApiToken, Job, Role, User

users_cli = AppGroup("users", help="Create users, change passwords, deactivate, API tokens.")
demo_cli = AppGroup("demo", help="Demo data.")
jobs_cli = AppGroup("jobs", help="Run jobs and re-sync schedules.")
queues_cli = AppGroup("queues", help="Show queues and workers; pause, resume and clear a queue.")


@users_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--email", default=None)
@click.option("--domain", "domain_name", default=None, help="Domain of a domain administrator.")
@click.option("--supervise", multiple=True, help="Domain a system administrator supervises (repeatable).")
@click.option("--password", default=None, help="Omit to be asked (not echoed).")
def users_create(username, role, email, domain_name, supervise, password):
    """Create a user (system accounts get no password: they use API tokens)."""
    from webapp.accounts import AccountError, create_user

    if password is None and role != Role.SYSTEM:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(username, role, password=password, email=email, domain_name=domain_name,
                           supervise=supervise)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {user.role_label.lower()} {user.username}.")


def _user(username) -> User:
    from webapp.accounts import AccountError, find_user

    try:
        return find_user(username)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None


@users_cli.command("password")
@click.argument("username")
@click.option("--password", default=None, help="Omit to be asked (not echoed).")
def users_password(username, password):
    """Set a new password; every session of the user ends."""
    from webapp.accounts import AccountError, set_password

    user = _user(username)
    if password is None:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        set_password(user, password)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Password of {user.username} changed; every session of the user has ended.")


@users_cli.command("deactivate")
@click.argument("username")
def users_deactivate(username):
    """Stop the user signing in and using API tokens; every session of the user ends."""
    from webapp.accounts import deactivate

    user = _user(username)
    deactivate(user)
    click.echo(f"{user.username} is deactivated; every session of the user has ended.")


@users_cli.command("token")
@click.argument("username")
def users_token(username):
    """Print a new API token for the user (only its hash is stored: keep it now)."""
    user = _user(username)
    _, plain = ApiToken.issue(user)
    db.session.commit()
    click.echo(plain)


@demo_cli.command("seed")
def demo_seed():
    """Demo domains, users (password 'demo'), jobs and a little history; safe to run again."""
    from webapp.demo import seed

    summary = seed()
    click.echo("Demo data ready: " + ", ".join(f"{v} {k}" for k, v in summary.items()) + ".")


@jobs_cli.command("run")
@click.argument("name")
@click.option("--args", default="", help="key=value arguments.")
def jobs_run(name, args):
    """Queue a run of the job with this name."""
    from webapp.execution import dispatch
    from webapp.jobtypes.registry import InvalidArguments
    from webapp.models import Trigger

    job = db.session.scalar(Job.live().where(Job.name == name))
    if job is None:
        raise click.ClickException(f"No job named {name!r}.")
    try:
        run = dispatch.request_run(job, trigger=Trigger.CLI, args=args)
    except (InvalidArguments, dispatch.NotRunnable) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Queued run {run.id} of {job.name}.")


@jobs_cli.command("resync")
def jobs_resync():
    """Rebuild the scheduler's occurrences in Redis from the database."""
    from webapp.scheduling import sync

    sync.ensure_system_jobs()
    click.echo("Re-synced: " + ", ".join(f"{v} {k}" for k, v in sync.resync().items()) + ".")


@queues_cli.command("show")
def queues_show():
    """Each queue: running or paused (by whom, when, why), serial, pause on failure, its waiting
    and running counts; then every worker: name, host, pid, queues, state, current run, last
    heartbeat, runs done and failed (a silent one is lost)."""
    from redis.exceptions import RedisError
    from rq import Queue

    from webapp.execution import queues
    from webapp.main.filters import localtime
    from webapp.queues.queries import RedisDown, workers

    conn, redis_error = redis_client.conn, None
    for name in queues.names():
        row = queues.state(name)
        counts = "waiting=? running=?"
        if redis_error is None:
            try:
                queue = Queue(name, connection=conn)
                running = queue.started_job_registry.get_job_ids(cleanup=False)
                counts = f"waiting={queue.count:<6} running={len(running)}"
            except RedisError as exc:
                redis_error = exc
        paused = row is not None and row.paused
        click.echo(f"{name:<12} {'paused ' if paused else 'running'} serial={'yes' if queues.is_serial(name) else 'no '} "
                   f"pause-on-failure={'on ' if row is not None and row.pause_on_failure else 'off'} {counts}")
        if paused:
            failed = f" (run #{row.paused_run_id})" if row.paused_run_id else ""
            click.echo(f"{'':<12} paused by {row.paused_by_name} at {localtime(row.paused_at)}"
                       f"{': ' + row.reason if row.reason else ''}{failed}")
    try:
        if redis_error is not None:
            raise redis_error
        rows = workers()
    except (RedisDown, RedisError) as exc:
        raise click.ClickException(f"Redis does not answer ({exc}): queue counts and workers cannot be read now.") \
            from None
    if not rows:
        click.echo("No worker is running: nothing queued will start.")
    for row in rows:
        current = f"run #{row.run_id}" if row.run_id else (row.current_job or "-")
        beat = localtime(row.last_heartbeat) if row.last_heartbeat else "never"
        click.echo(f"worker {row.name} host={row.hostname} pid={row.pid} queues={','.join(row.queues)} "
                   f"state={row.state} current={current} heartbeat={beat} done={row.done} failed={row.failed}")


def _queue(name: str) -> str:
    """The queue named on the command line; an unknown name is a usage error (exit 2)."""
    from webapp.execution import queues

    try:
        return queues.check(name)
    except queues.UnknownQueue as exc:
        raise click.BadParameter(f"{exc} The queues are: {', '.join(queues.names())}.", param_hint="NAME") from None


def _actor(username: str | None) -> User | None:
    """Whom the audit names: --as USERNAME, one who may steer queues; the system without it."""
    from webapp.auth.permissions import can_manage_queues

    if username is None:
        return None
    user = db.session.scalar(db.select(User).where(User.username == username))
    if user is None or not user.active or not can_manage_queues(user):
        raise click.BadParameter(f"{username[:80]!r} is no active superadmin or system administrator.",
                                 param_hint="--as")
    return user


acting_as = click.option("--as", "actor_name", default=None, metavar="USERNAME",
                         help="Audit the action under this superadmin or system administrator (default: system).")


@queues_cli.command("pause")
@click.argument("name")
@click.option("--reason", default="", help="Why, shown on the queues page and the dashboard (500 characters at most).")
@acting_as
def queues_pause(name, reason, actor_name):
    """Pause a queue: runs in progress finish, nothing new starts on it until it is resumed."""
    from webapp.execution import queues
    from webapp.queues.actions import reason_problem

    queue = _queue(name)
    problem = reason_problem(reason)
    if problem:
        raise click.BadParameter(problem, param_hint="--reason")
    click.echo(queues.pause(queue, _actor(actor_name), reason).message)


@queues_cli.command("resume")
@click.argument("name")
@acting_as
def queues_resume(name, actor_name):
    """Resume a paused queue: its waiting runs start in the order they were queued."""
    from webapp.execution import queues

    queue = _queue(name)
    click.echo(queues.resume(queue, _actor(actor_name)).message)


@queues_cli.command("clear")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask (needed when there is no terminal to ask on).")
@acting_as
def queues_clear(name, yes, actor_name):
    """Cancel every run waiting on a queue; runs in progress go on. Asks first on a terminal;
    without one (cron, CI) it needs --yes, so that it never hangs on a question."""
    from webapp.execution import queues

    queue = _queue(name)
    actor = _actor(actor_name)
    if not yes:
        question = f"Cancel every run waiting on queue {queue} (runs in progress go on)?"
        if not sys.stdin.isatty():
            raise click.UsageError(f"Clearing queue {queue} cancels every run waiting on it, and there is no "
                                   "terminal to ask on: add --yes to clear it. Nothing was cancelled.")
        if not click.confirm(question, default=False):
            click.echo("Nothing was cancelled.")
            raise click.exceptions.Exit(1)
    click.echo(queues.clear(queue, actor).message)


@queues_cli.command("pause-on-failure")
@click.argument("name")
@click.argument("setting", type=click.Choice(["on", "off"], case_sensitive=False))
@acting_as
def queues_pause_on_failure(name, setting, actor_name):
    """Turn on or off: a failed run on the queue pauses it (the superadmins get an email)."""
    from webapp.execution import queues

    queue = _queue(name)
    click.echo(queues.set_pause_on_failure(queue, setting.lower() == "on", _actor(actor_name)).message)
