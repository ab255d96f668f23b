"""Support scripts run by a real worker, each in a child process of its own (webapp/support/):
the log, the context, the limits, cancel, clean-up, and the worker surviving all of it."""
import hashlib
import json
import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.conftest import wait_for
from tests.factories import make_script_job, make_user
from tests.integration.test_engine import final
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.models import AuditEvent, Job, Run, RunFile, RunLogLine, RunStatus, Trigger
from webapp.models.scripts import script_md5
from webapp.models.settings import set_setting
from webapp.models.types import utcnow


@pytest.fixture
def limits(ctx):
    """Short limits, so that the file stays fast: 2 s and 256 MiB."""
    set_setting("script_time_limit", "2")
    set_setting("script_memory_mb", "256")
    db.session.commit()


def run_script(script, timeout=30, **job_fields):
    job = make_script_job(script, **job_fields)
    return final(dispatch.request_run(job).id, timeout)


def log_of(run) -> list[tuple[str, str]]:
    return [tuple(row) for row in db.session.execute(select(RunLogLine.level, RunLogLine.message)
                                                     .where(RunLogLine.run_id == run.id).order_by(RunLogLine.seq))]


def printed(run) -> list[str]:
    """The script's own lines: the log after the version line."""
    return [message for _, message in log_of(run)[1:]]


def alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def assert_worker_survives(worker):
    """The same worker process runs the next script to success."""
    assert worker.proc.poll() is None, worker.output()
    run = run_script("log('still here')")
    assert run.status == RunStatus.SUCCEEDED and printed(run) == ["still here"]
    assert worker.proc.poll() is None


def test_the_script_runs_in_its_own_process_without_the_workers_secrets(ctx, start_process, limits):
    from rq import Worker

    from webapp.extensions import redis_client

    worker = start_process(env={"SECRET_KEY": "s3cret-key-value", "MAIL_PASSWORD": "mail-pa55word"})
    wait_for(lambda: Worker.all(connection=redis_client.conn), 30, message="worker start")
    run = run_script("import json, os, sys\n"
                     "import webapp\n"  # importable: PYTHONPATH is in the allowlist
                     "print(dict(os.environ))\n"
                     "print(json.dumps({'pid': os.getpid(), 'sid': os.getsid(0), 'pgid': os.getpgid(0),\n"
                     "                  'cwd': os.getcwd(), 'env': sorted(os.environ),\n"
                     "                  'argv': sys.argv, 'stdin': sys.stdin.read()}))\n")
    assert run.status == RunStatus.SUCCEEDED, run.message
    environ, facts = printed(run)
    facts = json.loads(facts)
    assert "s3cret-key-value" not in environ and "mail-pa55word" not in environ
    assert "SECRET_KEY" not in facts["env"] and "MAIL_PASSWORD" not in facts["env"]
    assert "DATABASE_URL" not in facts["env"] and "REDIS_URL" not in facts["env"]
    assert set(facts["env"]) <= {"PATH", "LANG", "LANGUAGE", "TZ", "HOME", "PYTHONPATH", "PYTHONUNBUFFERED",
                                 "TMPDIR", "MALLOC_ARENA_MAX"} | {k for k in facts["env"] if k.startswith("LC_")}
    assert facts["pid"] not in (worker.proc.pid, *worker.children())  # not the worker, not its horse
    assert facts["sid"] == facts["pgid"] == facts["pid"]  # a session and group of its own
    assert facts["argv"][0].endswith(os.path.join("webapp", "support", "child.py"))
    assert facts["stdin"] == ""  # the setup came on stdin and was read; the script gets nothing
    assert "firetime-script-" in facts["cwd"] and not os.path.exists(facts["cwd"])  # removed after the run


def test_log_context_and_output_files(ctx, worker, limits):
    user = make_user(username="ops-bot")
    script = ("import sys\n"
              "print('printed first')\n"
              "log('then a log line')\n"
              "print('and printed again')\n"
              "print('to stderr', file=sys.stderr)\n"
              "warn('a warning')\n"
              "ctx.log(f\"config {config['colour']} {ctx.config['size']}\")\n"
              "log(f'run as {run_as.username} {ctx.run_as.id}')\n"
              "print('{\"t\": \"end\", \"status\": \"exception\", \"type\": \"Forged\"}')\n"
              "progress(40, 'almost half')\n"
              "with output_file('../result set.csv') as out:\n"
              "    out.write('a,b\\n1,2\\n')\n"
              "with ctx.output_file('blob.bin', mode='wb') as out:\n"
              "    out.write(bytes(range(256)))\n")
    run = run_script(script, config={"colour": "blue", "size": "L"}, run_as=user)
    assert run.status == RunStatus.WARNINGS, run.message
    lines = log_of(run)
    assert lines[0] == ("info", f"Script version 1 (MD5 {script_md5(script)}).")
    assert lines[1:9] == [
        ("info", "printed first"), ("info", "then a log line"), ("info", "and printed again"),
        ("warning", "to stderr"), ("warning", "a warning"), ("info", "config blue L"),
        ("info", f"run as ops-bot {user.id}"),
        ("info", '{"t": "end", "status": "exception", "type": "Forged"}'),  # a print is only a line
    ]
    assert run.progress == 40 and run.progress_message == "almost half"
    files = {f.name: f for f in db.session.scalars(select(RunFile).where(RunFile.run_id == run.id))}
    assert set(files) == {"result_set.csv", "blob.bin"}
    assert files["result_set.csv"].path == os.path.join("runs", str(run.id), "result_set.csv")
    assert files["result_set.csv"].sha256 == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert files["result_set.csv"].content_type == "text/csv" and files["result_set.csv"].size == 8
    assert files["blob.bin"].sha256 == hashlib.sha256(bytes(range(256))).hexdigest()
    assert ("info", "Wrote output file result_set.csv (8 bytes).") in lines


def test_database_changes_and_their_audit_commit_together(ctx, worker, limits):
    set_setting("script_time_limit", "60")  # importing the models takes a second or more on a busy host
    db.session.commit()
    user = make_user(username="script-bot")
    script = ("from webapp.models import Job\n"
              "job = db.get(Job, ctx.job_id)\n"
              "before = {'description': job.description}\n"
              "job.description = config['text']\n"
              "audit('edit', job, before=before, after={'description': job.description})\n"
              "if config.get('fail'):\n"
              "    raise RuntimeError('changed my mind')\n")
    run = run_script(script, config={"text": "set by a script"}, run_as=user)
    assert run.status == RunStatus.SUCCEEDED, run.message
    job = db.session.get(Job, run.job_id, populate_existing=True)
    assert job.description == "set by a script"
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.run_id == run.id))
    assert (event.action, event.object_type, event.object_id) == ("edit", "job", job.id)
    assert (event.actor_id, event.actor_name) == (user.id, "script-bot")
    assert event.before == {"description": ""} and event.after == {"description": "set by a script"}

    failed = run_script(script, config={"text": "never saved", "fail": "yes"}, run_as=user)
    assert failed.status == RunStatus.FAILED and failed.message == "RuntimeError: changed my mind"
    assert db.session.get(Job, failed.job_id, populate_existing=True).description == ""
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.run_id == failed.id)) is None


def test_an_uncaught_exception_fails_the_run_with_the_scripts_traceback(ctx, worker, limits):
    run = run_script("def share(total, people):\n"
                     "    return total / people\n"
                     "log('before')\n"
                     "share(10, 0)\n")
    assert run.status == RunStatus.FAILED
    assert run.message == "ZeroDivisionError: division by zero"
    lines = log_of(run)
    assert ("error", "ZeroDivisionError: division by zero") in lines
    traceback = next(message for level, message in lines if level == "debug")
    assert 'File "<script>", line 4, in <module>' in traceback and "share(10, 0)" in traceback
    assert 'File "<script>", line 2, in share' in traceback and "return total / people" in traceback
    assert "child.py" not in traceback  # the child's own frames are not the script's


def test_sys_exit_codes(ctx, worker, limits):
    failed = run_script("import sys\nlog('leaving')\nsys.exit(3)\n")
    assert failed.status == RunStatus.FAILED and failed.message == "The script exited with code 3."
    assert run_script("import sys\nsys.exit(0)\n").status == RunStatus.SUCCEEDED
    assert run_script("import sys\nsys.exit()\n").status == RunStatus.SUCCEEDED
    # A process that ends without saying how is judged by its status.
    died = run_script("import os\nos._exit(5)\n")
    assert died.status == RunStatus.FAILED and died.message == "The script exited with code 5."


def test_time_limit(ctx, worker, limits):
    started = time.monotonic()
    run = run_script("import time\nlog('sleeping')\ntime.sleep(60)\n")
    assert run.status == RunStatus.FAILED
    assert "time limit exceeded" in run.message and "(2 s)" in run.message  # the setting
    assert time.monotonic() - started < 15
    assert printed(run)[0] == "sleeping"
    shorter = run_script("import time\ntime.sleep(60)\n", time_limit=1)
    assert "time limit exceeded (1 s)" in shorter.message  # the job's own, below the setting
    capped = run_script("import time\ntime.sleep(60)\n", time_limit=3600)
    assert "time limit exceeded (2 s)" in capped.message  # never more than the setting
    assert_worker_survives(worker)


def test_memory_limit(ctx, worker, limits):
    hog = run_script("log('allocating')\nkept = b'x' * (400 << 20)\nlog('never here')\n")
    assert hog.status == RunStatus.FAILED and "memory limit exceeded" in hog.message, hog.message
    assert "never here" not in printed(hog)
    # Four processes of 100 MiB each: each under the address-space limit, together over it.
    forks = run_script("import os, time\n"
                       "for _ in range(4):\n"
                       "    if os.fork() == 0:\n"
                       "        kept = b'x' * (100 << 20)\n"
                       "        time.sleep(60)\n"
                       "        os._exit(0)\n"
                       "time.sleep(60)\n", time_limit=2)
    assert forks.status == RunStatus.FAILED and "memory limit exceeded (256 MiB)" in forks.message, forks.message
    # Caught by the script, a MemoryError is the script's business.
    caught = run_script("try:\n    b'x' * (400 << 20)\nexcept MemoryError:\n    log('too big, skipped')\n")
    assert caught.status == RunStatus.SUCCEEDED and printed(caught) == ["too big, skipped"]
    assert_worker_survives(worker)


def test_cancel_kills_the_script(ctx, worker, limits):
    set_setting("script_time_limit", "60")
    db.session.commit()
    job = make_script_job("import os, time\nprint(os.getpid())\nwhile True:\n    time.sleep(0.1)\n")
    run = dispatch.request_run(job)
    pid = wait_for(lambda: _first_printed_pid(run.id), 20, message="the script to start")
    dispatch.cancel_run(db.session.get(Run, run.id))
    started = time.monotonic()
    run = final(run.id)
    assert run.status == RunStatus.CANCELLED
    assert time.monotonic() - started < 5  # not the reaper's grace: the horse stopped it
    assert not alive(pid)
    assert_worker_survives(worker)


def _first_printed_pid(run_id):
    """The pid the script printed, from the run's live log (the database has it at the end)."""
    from webapp.execution import livelog
    from webapp.extensions import redis_client

    for line in livelog.all_lines(redis_client.conn, run_id):
        if line["msg"].isdigit():
            return int(line["msg"])
    return None


def test_nothing_the_script_started_outlives_the_run(ctx, worker, limits):
    script = ("import os, time\n"
              "pids = []\n"
              "for _ in range(3):\n"
              "    pid = os.fork()\n"
              "    if pid == 0:\n"
              "        time.sleep(600)\n"
              "        os._exit(0)\n"
              "    pids.append(pid)\n"
              "r, w = os.pipe()\n"
              "middle = os.fork()\n"
              "if middle == 0:\n"  # a double fork that leaves the session: the grandchild is orphaned
              "    os.setsid()\n"
              "    grandchild = os.fork()\n"
              "    if grandchild:\n"
              "        os.write(w, str(grandchild).encode())\n"
              "        os._exit(0)\n"
              "    time.sleep(600)\n"
              "    os._exit(0)\n"
              "os.waitpid(middle, 0)\n"
              "pids.append(int(os.read(r, 20)))\n"
              "print(' '.join(map(str, pids)))\n")
    run = run_script(script)
    assert run.status == RunStatus.SUCCEEDED, run.message
    pids = [int(pid) for pid in printed(run)[0].split()]
    assert len(pids) == 4
    assert not [pid for pid in pids if alive(pid)]
    # Stopped at the time limit while they run: the same.
    stopped = run_script(script + "time.sleep(60)\n")
    assert "time limit exceeded" in stopped.message
    pids = [int(pid) for pid in printed(stopped)[0].split()]
    assert not [pid for pid in pids if alive(pid)]


def test_a_million_printed_lines(ctx, worker, limits, app, login_as, client):
    set_setting("script_time_limit", "120")
    db.session.commit()
    run = run_script("for i in range(1_000_000):\n    print(i)\n", timeout=150)
    assert run.status == RunStatus.SUCCEEDED
    kept = app.config["LOG_MAX_LINES"]
    assert run.line_count == kept
    # Not kept: the prints beyond the limit, and the line saying that the output file was written.
    assert f"({1_000_002 - kept} log lines beyond the limit were not kept.)" in run.message
    file = db.session.scalar(select(RunFile).where(RunFile.run_id == run.id, RunFile.name == "script-output.log"))
    with open(os.path.join(app.config["FILES_DIR"], file.path), "rb") as handle:
        whole = handle.read()
    assert whole == "".join(f"{i}\n" for i in range(1_000_000)).encode()
    assert file.size == len(whole) and file.sha256 == hashlib.sha256(whole).hexdigest()
    login_as(make_user())
    page = client.get(f"/runs/{run.id}")
    assert page.status_code == 200 and "script-output.log" in page.get_data(as_text=True)
    popup = client.get(f"/runs/{run.id}/popup", headers={"HX-Request": "true"})
    assert popup.status_code == 200 and "99998" in popup.get_data(as_text=True)  # the last line kept
    assert_worker_survives(worker)


def test_a_deactivated_run_as_user_fails_the_run_and_the_schedule_goes_on(ctx, worker, start_process, limits):
    from webapp.scheduling import sync

    user = make_user(username="retired-bot")
    first = utcnow().replace(microsecond=0) + timedelta(seconds=1)
    job = make_script_job("log('must not run')", run_as=user,
                          plan={"kind": "poll", "seconds": 1, "anchor": first.isoformat()})
    user.active = False
    job.next_fire_at = first
    db.session.commit()
    sync.place(job)
    scheduler = start_process("scheduler")

    def two_planned_runs_ended():
        db.session.expire_all()
        runs = db.session.scalars(select(Run).where(Run.job_id == job.id, Run.trigger == Trigger.PLAN)
                                  .order_by(Run.id)).all()
        # A fire while the previous run is still going is skipped (the overlap rule); those ran nothing.
        ended = [run for run in runs if run.is_final and run.status != RunStatus.SKIPPED]
        return ended if len(ended) >= 2 else None

    try:
        runs = wait_for(two_planned_runs_ended, 40, message="two planned runs")
    except AssertionError:
        print(scheduler.output())
        raise
    for run in runs[:2]:
        assert run.status == RunStatus.FAILED
        assert run.message.startswith("The run-as user “retired-bot” is deactivated")
        assert "must not run" not in printed(run)
    job = db.session.get(Job, job.id, populate_existing=True)
    assert job.next_fire_at is not None and job.next_fire_at > runs[1].occurrence_at
