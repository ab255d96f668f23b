"""The OpenAPI document tells the truth: Schemathesis, with every check, finds nothing against the
live app, and the document's examples and patterns are ones the server accepts."""
import logging
import re
import threading
import time
from datetime import datetime, timezone

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema
from werkzeug.serving import make_server

from tests.factories import make_job, make_user
from webapp.extensions import db
from webapp.models import ApiToken, Run, RunStatus, Trigger

UTC = timezone.utc


@pytest.fixture
def api_data(app):
    """A superadmin's API token, a self-test job without fire times and a run with nothing filled
    in yet (the nulls a client meets). Made outside any app context of the test, so that each
    request has its own, as in production."""
    with app.app_context():
        job = make_job("Nothing planned")
        run = Run(job_id=job.id, trigger=Trigger.API, status=RunStatus.QUEUED, created_at=datetime.now(UTC))
        db.session.add(run)
        _, token = ApiToken.issue(make_user())
        db.session.commit()
        return {"token": token, "jobId": job.id, "runId": run.id}


@pytest.fixture
def live_url(app):
    """The app served over HTTP on a free loopback port: Schemathesis' engine (what its command
    line runs) reaches an app only over HTTP, as a client would."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    quiet = logging.getLogger("werkzeug")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    quiet.setLevel(level)


def schemathesis_run(url: str, token: str, **extra) -> list[str]:
    """What `schemathesis run --checks all` reports against the document at `url`: one line per failed check."""
    config = SchemathesisConfig.from_dict({
        "seed": 5,  # the same cases every run; one pass of each phase (no max-time: it would repeat fuzzing)
        "request-timeout": 5,
        "headers": {"Authorization": f"Bearer {token}"},
        "generation": {"mode": "all", "max-examples": 8},
        "checks": {"enabled": True},
        "operations": [{
            # Run arguments are read by the job's type: a string the schema allows may be
            # arguments the job refuses, which is the documented 400.
            "include-path": "/api/scheduled-jobs/{jobId}/runs", "include-method": "POST",
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404", "409"]}},
        }],
        **extra,
    })
    schema = schemathesis.openapi.from_url(f"{url}/api/openapi.json", config=config)
    problems, stream = [], from_schema(schema).execute()
    deadline = time.monotonic() + 40  # a safety net: one pass takes 10 to 15 s here
    for event in stream:
        if time.monotonic() > deadline:
            stream.stop()
        if isinstance(event, events.ScenarioFinished):
            for case_id, checks in event.recorder.checks.items():
                case = event.recorder.cases[case_id].value
                for check in checks:
                    failure = check.failure_info.failure if check.failure_info is not None else None
                    if failure is not None:
                        problems.append(f"{check.name}: {case.method} {case.formatted_path} "
                                        f"query={case.query} body={str(case.body)[:80]}: "
                                        f"{failure.title}: {failure.message[:300]}")
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            problems.append(f"error: {getattr(event, 'info', event)}")
    return problems


def test_schemathesis_with_every_check_finds_nothing(live_url, api_data):
    """Once with ids Schemathesis draws, once with the ids of real objects (so that real answers,
    nulls included, are checked against the document); bounded to well under a minute."""
    problems = schemathesis_run(live_url, api_data["token"])
    problems += schemathesis_run(live_url, api_data["token"],
                                 parameters={"jobId": api_data["jobId"], "runId": api_data["runId"]})
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(dict.fromkeys(problems))


# ---------------------------------------------------------------- what the document shows

def _document(client) -> dict:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def _headers(token) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_the_example_arguments_are_accepted_by_the_example_job(app, client, api_data):
    """The document shows a job and arguments to run it with: a job like it takes them."""
    doc = _document(client)
    example_job = doc["paths"]["/api/scheduled-jobs/{jobId}"]["get"]["responses"]["200"]["content"][
        "application/json"]["example"]
    args = doc["components"]["schemas"]["RunRequest"]["properties"]["args"]["example"]
    assert args
    with app.app_context():
        job_id = make_job(example_job["name"], job_type=example_job["type"], params={}).id
    response = client.post(f"/api/scheduled-jobs/{job_id}/runs", json={"args": args},
                           headers=_headers(api_data["token"]))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["args"] == args
    # The example job is one the document itself describes.
    assert set(example_job) == set(doc["components"]["schemas"]["Job"]["properties"])


def _date_parameter(doc, name):
    runs = doc["paths"]["/api/scheduled-jobs/{jobId}/runs"]["get"]["parameters"]
    return next(p for p in runs if p["name"] == name)["schema"]


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_every_date_the_document_admits_is_accepted(client, api_data, data):
    doc = _document(client)
    for name in ("fromDate", "toDate"):
        value = data.draw(st.from_regex(_date_parameter(doc, name)["pattern"], fullmatch=True), label=name)
        response = client.get(f"/api/scheduled-jobs/{api_data['jobId']}/runs?{name}={value}",
                              headers=_headers(api_data["token"]))
        assert response.status_code == 200, (name, value, response.get_json())


@pytest.mark.parametrize("value, admitted", [
    ("00010101", True), ("99991231", True), ("99991231T235959", True), ("20240229", True), ("20000229", True),
    ("00040229", True), ("20220221T000000", True),
    ("20221399", False), ("20220230", False), ("20230229", False), ("19000229", False), ("00000101", False),
    ("20220221T240000", False), ("20220221T236000", False), ("2022022", False), ("20220221T0615", False),
])
@pytest.mark.parametrize("zone", ["Europe/Amsterdam", "America/New_York"])
def test_the_server_accepts_exactly_the_dates_the_document_admits(app, client, api_data, value, admitted, zone):
    """At the ends of the calendar too, whichever side of UTC the server's time zone is."""
    pattern = re.compile(_date_parameter(_document(client), "fromDate")["pattern"])
    assert bool(pattern.search(value)) is admitted
    previous, app.config["TIMEZONE"] = app.config["TIMEZONE"], zone
    try:
        for name in ("fromDate", "toDate"):
            response = client.get(f"/api/scheduled-jobs/{api_data['jobId']}/runs?{name}={value}",
                                  headers=_headers(api_data["token"]))
            assert response.status_code == (200 if admitted else 400), (name, response.get_json())
    finally:
        app.config["TIMEZONE"] = previous
