"""Command line: users and tokens, demo data, run a job by name, show queues."""
import click
from flask.cli import AppGroup

from webapp.extensions import db, redis_client
from webapp.models import ApiToken, Job, Role, User

users_cli = AppGroup("users", help="Create users, change passwords, deactivate, API tokens.")
demo_cli = AppGroup("demo", help="Demo data.")
jobs_cli = AppGroup("jobs", help="Run jobs and re-sync schedules.")
queues_cli = AppGroup("queues", help="Show queues.")


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
    """Each queue with its waiting and running counts, then every worker: name, host, pid,
    queues, state, current run, last heartbeat, runs done and failed (a silent one is lost)."""
    from redis.exceptions import RedisError
    from rq import Queue

    from webapp.main.filters import localtime
    from webapp.queues.queries import RedisDown, queue_names, workers

    conn = redis_client.conn
    try:
        for name in queue_names():
            queue = Queue(name, connection=conn)
            running = queue.started_job_registry.get_job_ids(cleanup=False)
            click.echo(f"{name:<12} waiting={queue.count:<6} running={len(running)}")
        rows = workers()
    except (RedisDown, RedisError) as exc:
        raise click.ClickException(f"Redis does not answer ({exc}): queues and workers cannot be read now.") from None
    if not rows:
        click.echo("No worker is running: nothing queued will start.")
    for row in rows:
        current = f"run #{row.run_id}" if row.run_id else (row.current_job or "-")
        beat = localtime(row.last_heartbeat) if row.last_heartbeat else "never"
        click.echo(f"worker {row.name} host={row.hostname} pid={row.pid} queues={','.join(row.queues)} "
                   f"state={row.state} current={current} heartbeat={beat} done={row.done} failed={row.failed}")


