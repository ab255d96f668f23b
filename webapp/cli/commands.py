"""Command line: users and tokens, demo data, run a job by name, show queues."""
import click
from flask.cli import AppGroup
from sqlalchemy import select

from webapp.extensions import db, redis_client
from webapp.models import ApiToken, Job, Role, User

users_cli = AppGroup("users", help="Create users and API tokens.")
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


@users_cli.command("token")
@click.argument("username")
def users_token(username):
    """Print a new API token for the user (only its hash is stored: keep it now)."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise click.ClickException(f"No user {username!r}.")
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
    """Each queue with its waiting and running counts, and the workers."""
    from rq import Queue, Worker

    from webapp.jobtypes.registry import queue_names

    conn = redis_client.conn
    for name in queue_names():
        queue = Queue(name, connection=conn)
        running = queue.started_job_registry.get_job_ids(cleanup=False)
        click.echo(f"{name:<12} waiting={queue.count:<6} running={len(running)}")
    for worker in Worker.all(connection=conn):
        click.echo(f"worker {worker.name} state={worker.get_state()} queues={','.join(worker.queue_names())}")


