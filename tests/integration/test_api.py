"""The REST API as a client sees it: token auth, the UI's visibility rules, runs, files, JSON errors,
and the generated OpenAPI document. Real database and Redis; one test with a real worker."""
import json
import os
import re
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from tests.conftest import wait_for
from tests.factories import make_domain, make_job, make_user
from webapp.extensions import db
from webapp.models import ApiToken, Job, JobState, Role, Run, RunFile, RunStatus, Scope, Trigger
from webapp.models.types import utcnow

UTC = timezone.utc


# ---------------------------------------------------------------- helpers

def token_for(user) -> dict:
    _, plain = ApiToken.issue(user)
    db.session.commit()
    return {"Authorization": f"Bearer {plain}"}


def bot(username=None):
    """A system account: the usual API user (no password, so quick to make). It sees installation jobs."""
    return make_user(Role.SYSTEM, username=username)


def assert_error(response, status: int) -> dict:
    """An API error: the exact status, a JSON body with a non-empty message."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.is_json, response.headers.get("Content-Type")
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"].strip(), body
    assert body.get("code") == status
    return body


def add_run(job, status=RunStatus.SUCCEEDED, created_at=None, **extra) -> Run:
    run = Run(job_id=job.id, trigger=extra.pop("trigger", Trigger.PLAN), status=status,
              created_at=created_at or utcnow(), **extra)
    db.session.add(run)
    db.session.commit()
    return run


def runs_of(job) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(Run.id)).where(Run.job_id == job.id))


def ids(response) -> list[int]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["id"] for item in response.get_json()]


# ---------------------------------------------------------------- authentication

def test_no_token_wrong_scheme_unknown_token_answer_401(ctx, client):
    job = make_job()
    cases = [
        {},
        {"Authorization": ""},
        {"Authorization": "Basic dXNlcjpwdw=="},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": "Token ft_whatever"},
        {"Authorization": "Bearer ft_not-a-real-token"},
    ]
    for headers in cases:
        for path in ("/api/scheduled-jobs", f"/api/scheduled-jobs/{job.id}", f"/api/scheduled-jobs/{job.id}/runs"):
            response = client.get(path, headers=headers)
            body = assert_error(response, 401)
            assert "token" in body["message"].lower(), body
            assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), headers
    response = client.post(f"/api/scheduled-jobs/{job.id}/runs", json={})
    assert_error(response, 401)
    assert runs_of(job) == 0


def test_a_token_records_its_last_use_at_most_once_a_minute(ctx, client):
    from datetime import timedelta

    admin = make_user(Role.SUPERADMIN)
    headers = token_for(admin)
    assert client.get("/api/scheduled-jobs", headers=headers).status_code == 200
    token = db.session.scalar(select(ApiToken).where(ApiToken.user_id == admin.id))
    first = token.last_used_at
    assert first is not None
    assert client.get("/api/scheduled-jobs", headers=headers).status_code == 200
    db.session.refresh(token)
    assert token.last_used_at == first  # a second call within the minute writes nothing
    token.last_used_at = first - timedelta(minutes=2)
    db.session.commit()
    assert client.get("/api/scheduled-jobs", headers=headers).status_code == 200
    db.session.refresh(token)
    assert token.last_used_at > first


def test_valid_tokens_work_for_people_and_system_accounts_but_not_inactive_users(ctx, client):
    job = make_job("Installation job")
    admin = make_user(Role.SUPERADMIN)
    system = make_user(Role.SYSTEM, username="integration-bot")
    admin_headers, system_headers = token_for(admin), token_for(system)

    assert ids(client.get("/api/scheduled-jobs", headers=admin_headers)) == [job.id]
    # A system account cannot sign in to the UI, but it is exactly who uses the API.
    assert ids(client.get("/api/scheduled-jobs", headers=system_headers)) == [job.id]
    # The scheme is case-insensitive (RFC 7235).
    lower = {"Authorization": "bearer " + system_headers["Authorization"].split(" ", 1)[1]}
    assert client.get("/api/scheduled-jobs", headers=lower).status_code == 200
    token = db.session.scalar(select(ApiToken).where(ApiToken.user_id == system.id))
    assert token.last_used_at is not None

    system.active = False
    db.session.commit()
    assert_error(client.get("/api/scheduled-jobs", headers=system_headers), 401)
    assert_error(client.post(f"/api/scheduled-jobs/{job.id}/runs", headers=system_headers), 401)
    assert runs_of(job) == 0


def test_a_signed_in_browser_session_is_not_an_api_credential(ctx, client, login_as):
    """The API is exempt from CSRF because it ignores cookies; a UI session must not open it."""
    job = make_job()
    login_as(make_user())
    assert_error(client.get("/api/scheduled-jobs"), 401)
    assert_error(client.post(f"/api/scheduled-jobs/{job.id}/runs", json={}), 401)
    assert runs_of(job) == 0


def test_tokens_are_stored_hashed(ctx, client):
    user = make_user()
    headers = token_for(user)
    plain = headers["Authorization"].split(" ", 1)[1]
    stored = db.session.scalar(select(ApiToken.token_hash).where(ApiToken.user_id == user.id))
    assert plain not in stored and len(stored) == 64


# ---------------------------------------------------------------- jobs and visibility

@pytest.fixture
def estate(ctx):
    """Domains A > A1 > A1x, B, C; one job in each, one installation job, and deleted jobs."""
    a = make_domain("A")
    a1 = make_domain("A1", parent=a)
    a1x = make_domain("A1x", parent=a1)
    b = make_domain("B")
    c = make_domain("C")
    jobs = {
        "inst": make_job("inst"),
        "a": make_job("a", domain=a),
        "a1": make_job("a1", domain=a1),
        "a1x": make_job("a1x", domain=a1x),
        "b": make_job("b", domain=b),
        "c": make_job("c", domain=c),
        "a-removed": make_job("a-removed", domain=a, state=JobState.REMOVED),
    }
    deleted = [make_job("a-deleted", domain=a, deleted_at=utcnow()),
               make_job("inst-deleted", deleted_at=utcnow())]
    return {"domains": {"a": a, "a1": a1, "a1x": a1x, "b": b, "c": c}, "jobs": jobs, "deleted": deleted}


def test_job_list_follows_the_visibility_rules(estate, client):
    d, j = estate["domains"], estate["jobs"]
    expected = {
        make_user(Role.SUPERADMIN): ["a", "a-removed", "a1", "a1x", "b", "c", "inst"],
        make_user(Role.SYSADMIN, supervised=[d["a"], d["b"]]): ["a", "a-removed", "a1", "a1x", "b", "inst"],
        make_user(Role.SYSADMIN, supervised=[d["a1"]]): ["a1", "a1x", "inst"],
        make_user(Role.SYSADMIN): ["inst"],
        make_user(Role.DOMAIN_ADMIN, domain=d["a"]): ["a", "a-removed", "a1", "a1x"],
        make_user(Role.DOMAIN_ADMIN, domain=d["a1"]): ["a1", "a1x"],
        make_user(Role.DOMAIN_ADMIN, domain=d["c"]): ["c"],
        make_user(Role.SYSTEM): ["inst"],
    }
    for user, names in expected.items():
        response = client.get("/api/scheduled-jobs", headers=token_for(user))
        assert response.status_code == 200 and response.is_json
        listed = response.get_json()
        assert sorted(item["name"] for item in listed) == names, user.username
        assert {item["id"] for item in listed} == {j[name].id for name in names}
        # Deleted jobs are never listed, whoever asks.
        assert not {item["id"] for item in listed} & {job.id for job in estate["deleted"]}


def follow_pages(client, url, headers) -> tuple[list[list[int]], list[dict]]:
    """Every page of a list from `url` on, following each Link rel="next": the ids of each page,
    and the paging headers each page had."""
    pages, seen = [], []
    while url:
        response = client.get(url, headers=headers)
        pages.append(ids(response))
        cursor, link = response.headers.get("X-Next-Cursor"), response.headers.get("Link")
        seen.append({"cursor": cursor, "link": link})
        url = None
        if link:
            match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
            assert match, link
            url = match.group(1)
            assert parse_qs(urlsplit(url).query)["after"] == [cursor]
        else:
            assert cursor is None
    return pages, seen


def test_job_list_comes_a_page_at_a_time_in_id_order(ctx, client):
    made = [Job(name=f"Job {i:03}", job_type="system.selftest", scope=Scope.INSTALLATION) for i in range(105)]
    db.session.add_all(made)
    db.session.commit()
    every = sorted(job.id for job in made)
    headers = token_for(bot())

    first = client.get("/api/scheduled-jobs", headers=headers)
    assert ids(first) == every[:100]  # 100 by default; still a JSON array
    assert first.headers["X-Next-Cursor"] == str(every[99])

    pages, _ = follow_pages(client, "/api/scheduled-jobs?limit=40", headers)
    assert pages == [every[:40], every[40:80], every[80:]]
    assert ids(client.get(f"/api/scheduled-jobs?after={every[-2]}", headers=headers)) == every[-1:]
    last = client.get(f"/api/scheduled-jobs?after={every[-1]}&limit=1", headers=headers)
    assert ids(last) == [] and "Link" not in last.headers and "X-Next-Cursor" not in last.headers
    # A page that happens to end with the last job has no next page.
    exact = client.get(f"/api/scheduled-jobs?after={every[-6]}&limit=5", headers=headers)
    assert ids(exact) == every[-5:] and "Link" not in exact.headers


def test_job_list_pages_keep_to_the_visibility_rules(estate, client):
    d, j = estate["domains"], estate["jobs"]
    headers = token_for(make_user(Role.DOMAIN_ADMIN, domain=d["a"]))
    pages, _ = follow_pages(client, "/api/scheduled-jobs?limit=1", headers)
    assert [page for page in pages] == [[job_id] for job_id in sorted(j[n].id for n in ("a", "a-removed", "a1", "a1x"))]


@pytest.mark.parametrize("query, name", [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=", "limit"),
                                         ("after=-1", "after"), ("after=x", "after"), ("after=2147483648", "after"),
                                         ("after=1e3", "after")])
def test_bad_job_list_queries_answer_400_naming_the_parameter(ctx, client, query, name):
    body = assert_error(client.get(f"/api/scheduled-jobs?{query}", headers=token_for(bot())), 400)
    assert name in body["message"], body


def test_one_job_has_its_fields(ctx, client):
    domain = make_domain("Study X")
    job = make_job("Nightly export", domain=domain, description="Exports the study",
                   plan={"kind": "daily", "days": [0, 2, 4], "times": ["02:30"]},
                   prev_fire_at=datetime(2022, 2, 21, 1, 30, tzinfo=UTC),
                   next_fire_at=datetime(2022, 2, 23, 1, 30, tzinfo=UTC))
    add_run(job, RunStatus.FAILED, created_at=datetime(2022, 2, 20, tzinfo=UTC))
    add_run(job, RunStatus.WARNINGS, created_at=datetime(2022, 2, 21, tzinfo=UTC))
    add_run(job, RunStatus.SKIPPED, created_at=datetime(2022, 2, 22, tzinfo=UTC))  # did nothing: not "last"
    headers = token_for(make_user(Role.DOMAIN_ADMIN, domain=domain))

    response = client.get(f"/api/scheduled-jobs/{job.id}", headers=headers)
    assert response.status_code == 200 and response.is_json
    body = response.get_json()
    assert body["id"] == job.id
    assert body["name"] == "Nightly export"
    assert body["description"] == "Exports the study"
    assert body["type"] == "system.selftest"
    assert body["typeLabel"] == "Self-test" and body["broken"] is False
    assert body["scope"] == "domain"
    assert body["domain"] == "Study X"
    assert body["state"] == "active"
    assert body["plan"] == {"kind": "daily", "description": "daily Mon, Wed, Fri at 02:30"}
    assert datetime.fromisoformat(body["previousFireTime"]) == datetime(2022, 2, 21, 1, 30, tzinfo=UTC)
    assert datetime.fromisoformat(body["nextFireTime"]) == datetime(2022, 2, 23, 1, 30, tzinfo=UTC)
    assert body["lastRunStatus"] == "SUCCEEDED"

    # The list carries the same fields.
    listed = client.get("/api/scheduled-jobs", headers=headers).get_json()
    assert listed == [body]


def test_installation_job_without_runs_or_plan(ctx, client):
    job = make_job("Housekeeping")
    body = client.get(f"/api/scheduled-jobs/{job.id}", headers=token_for(bot())).get_json()
    assert body["scope"] == "installation" and body["domain"] is None
    assert body["plan"]["kind"] == "disabled" and body["plan"]["description"]
    assert body["previousFireTime"] is None and body["nextFireTime"] is None
    assert body["lastRunStatus"] is None


def test_jobs_out_of_sight_answer_404(estate, client):
    d, j = estate["domains"], estate["jobs"]
    headers = token_for(make_user(Role.DOMAIN_ADMIN, domain=d["a1"]))
    assert client.get(f"/api/scheduled-jobs/{j['a1x'].id}", headers=headers).status_code == 200
    for job in (j["a"], j["b"], j["inst"], *estate["deleted"]):
        assert_error(client.get(f"/api/scheduled-jobs/{job.id}", headers=headers), 404)
        assert_error(client.get(f"/api/scheduled-jobs/{job.id}/runs", headers=headers), 404)
    unknown = max(job.id for job in [*j.values(), *estate["deleted"]]) + 1000
    for path in (f"/api/scheduled-jobs/{unknown}", f"/api/scheduled-jobs/{unknown}/runs",
                 f"/api/scheduled-jobs/{unknown}/runs/1", f"/api/scheduled-jobs/{unknown}/runs/1/result-file"):
        assert_error(client.get(path, headers=headers), 404)
    # The same message whether the job exists elsewhere or not at all: a guessed id reveals nothing.
    hidden = client.get(f"/api/scheduled-jobs/{j['b'].id}", headers=headers).get_json()["message"]
    missing = client.get(f"/api/scheduled-jobs/{unknown}", headers=headers).get_json()["message"]
    assert hidden == missing
    # A superadmin does not see deleted jobs either.
    admin = token_for(make_user())
    for job in estate["deleted"]:
        assert_error(client.get(f"/api/scheduled-jobs/{job.id}", headers=admin), 404)


def test_ids_out_of_range_are_404_not_500(ctx, client):
    headers = token_for(bot())
    job = make_job()
    run = add_run(job)
    huge = 10 ** 30
    for path in (f"/api/scheduled-jobs/{huge}", f"/api/scheduled-jobs/{huge}/runs",
                 f"/api/scheduled-jobs/{job.id}/runs/{huge}", f"/api/scheduled-jobs/{job.id}/runs/{huge}/result-file",
                 f"/api/scheduled-jobs/{huge}/runs/{run.id}", "/api/scheduled-jobs/-1", "/api/scheduled-jobs/abc"):
        assert_error(client.get(path, headers=headers), 404)
    assert_error(client.post(f"/api/scheduled-jobs/{huge}/runs", headers=headers), 404)


# ---------------------------------------------------------------- queueing runs

@pytest.mark.parametrize("kwargs", [{}, {"json": {}}, {"json": {"args": ""}}, {"json": {"args": None}},
                                    {"json": {"args": "duration=0"}}, {"json": {"args": "  "}}],
                         ids=["no-body", "empty-object", "empty-args", "null-args", "duration", "blank-args"])
def test_post_queues_a_run_and_answers_its_details(ctx, client, kwargs):
    caller = make_user(Role.SYSTEM, username="api-caller")
    job = make_job()
    response = client.post(f"/api/scheduled-jobs/{job.id}/runs", headers=token_for(caller), **kwargs)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] in ("QUEUED", "IN_PROGRESS")
    assert body["trigger"] == "api"
    assert body["runBy"] == "api-caller"
    assert body["jobId"] == job.id
    expected_args = (kwargs.get("json") or {}).get("args") or ""
    assert body["args"].strip() == expected_args.strip()
    run = db.session.get(Run, body["id"], populate_existing=True)
    assert run.job_id == job.id and run.trigger == Trigger.API and run.requested_by_id == caller.id
    assert runs_of(job) == 1
    # It can be read back at its own address.
    again = client.get(f"/api/scheduled-jobs/{job.id}/runs/{run.id}", headers=token_for(caller))
    assert again.status_code == 200 and again.get_json()["id"] == run.id


def test_post_with_form_content_type_and_empty_body_is_accepted(ctx, client):
    job = make_job()
    response = client.post(f"/api/scheduled-jobs/{job.id}/runs", headers=token_for(bot()),
                           data="", content_type="application/json")
    assert response.status_code == 201, response.get_data(as_text=True)


def test_bad_run_requests_answer_400_and_create_nothing(ctx, client):
    job = make_job()
    headers = token_for(bot())
    url = f"/api/scheduled-jobs/{job.id}/runs"

    body = assert_error(client.post(url, headers=headers, json={"args": "colour=blue"}), 400)
    assert "colour" in body["message"] and "Unknown argument" in body["message"]
    body = assert_error(client.post(url, headers=headers, json={"args": "duration=soon"}), 400)
    assert "duration" in body["message"]
    body = assert_error(client.post(url, headers=headers, json={"args": "just-a-word"}), 400)
    assert "key=value" in body["message"]
    body = assert_error(client.post(url, headers=headers, json={"args": "duration='0"}), 400)
    assert "args" in body["message"]

    body = assert_error(client.post(url, headers=headers, data='{"args": ', content_type="application/json"), 400)
    assert "json" in body["message"].lower()
    for not_an_object in (["duration=0"], "duration=0", None):
        body = assert_error(client.post(url, headers=headers, data=json.dumps(not_an_object),
                                        content_type="application/json"), 400)
        assert "JSON object" in body["message"]
    # A body the API would not read is refused, not silently dropped.
    body = assert_error(client.post(url, headers=headers, data={"args": "duration=0"}), 400)
    assert "JSON" in body["message"]
    body = assert_error(client.post(url, headers=headers, data="duration=0", content_type="text/plain"), 400)
    assert "JSON" in body["message"]
    body = assert_error(client.post(url, headers=headers, json={"args": "duration=0\u0000"}), 400)
    assert "args" in body["message"]
    body = assert_error(client.post(url, headers=headers, json={"args": 5}), 400)
    assert "args" in body["message"]
    body = assert_error(client.post(url, headers=headers, json={"args": ["duration=0"]}), 400)
    assert "args" in body["message"]
    body = assert_error(client.post(url, headers=headers, json={"arguments": "duration=0"}), 400)
    assert "arguments" in body["message"]
    body = assert_error(client.post(url, headers=headers, json={"args": "x" * 3000}), 400)
    assert "args" in body["message"]
    assert runs_of(job) == 0


def test_post_to_a_removed_or_archived_job_is_409(ctx, client):
    headers = token_for(bot())
    for state in (JobState.REMOVED, JobState.ARCHIVED):
        job = make_job(state=state)
        body = assert_error(client.post(f"/api/scheduled-jobs/{job.id}/runs", headers=headers, json={}), 409)
        assert state in body["message"]
        assert runs_of(job) == 0


def test_post_to_a_job_whose_type_is_gone_is_409(ctx, client):
    job = make_job(job_type="plugin.uninstalled", params={}, plan={"kind": "automatic"})
    headers = token_for(bot())
    # Shown as the pages show it: broken, under its key, its automatic plan gone with its type.
    shown = client.get(f"/api/scheduled-jobs/{job.id}", headers=headers).get_json()
    assert (shown["broken"], shown["typeLabel"], shown["plan"]) == \
        (True, "plugin.uninstalled", {"kind": "automatic", "description": "invalid plan"})
    assert client.get("/api/scheduled-jobs", headers=headers).get_json() == [shown]
    body = assert_error(client.post(f"/api/scheduled-jobs/{job.id}/runs", headers=headers), 409)
    assert "plugin.uninstalled" in body["message"]
    assert runs_of(job) == 0


def test_post_to_another_domains_job_is_404_and_runs_nothing(ctx, client):
    mine, theirs = make_domain(), make_domain()
    their_job = make_job(domain=theirs)
    headers = token_for(make_user(Role.DOMAIN_ADMIN, domain=mine))
    assert_error(client.post(f"/api/scheduled-jobs/{their_job.id}/runs", headers=headers, json={}), 404)
    assert_error(client.post(f"/api/scheduled-jobs/{their_job.id}/runs", headers=headers,
                             json={"args": "colour=blue"}), 404)  # no hint about its arguments either
    assert runs_of(their_job) == 0
    deleted = make_job(domain=mine, deleted_at=utcnow())
    assert_error(client.post(f"/api/scheduled-jobs/{deleted.id}/runs", headers=headers, json={}), 404)
    assert runs_of(deleted) == 0


def test_second_post_waits_behind_the_first(ctx, client):
    job = make_job()
    headers = token_for(bot())
    first = client.post(f"/api/scheduled-jobs/{job.id}/runs", headers=headers).get_json()
    second = client.post(f"/api/scheduled-jobs/{job.id}/runs", headers=headers).get_json()
    assert first["id"] != second["id"] and second["status"] == "QUEUED"
    assert runs_of(job) == 2


# ---------------------------------------------------------------- listing runs

@pytest.fixture
def dated_runs(ctx):
    """Runs around 21 Feb 2022 in Amsterdam (UTC+1 in February), inserted out of time order."""
    assert ctx.config["TIMEZONE"] == "Europe/Amsterdam"
    job = make_job("Dated")
    at = {
        "day_before_last_second": datetime(2022, 2, 20, 22, 59, 59, tzinfo=UTC),  # 20 Feb 23:59:59 local
        "day_start": datetime(2022, 2, 20, 23, 0, 0, tzinfo=UTC),  # 21 Feb 00:00 local
        "before_0615": datetime(2022, 2, 21, 5, 14, 59, tzinfo=UTC),  # 06:14:59 local
        "at_0615": datetime(2022, 2, 21, 5, 15, 0, tzinfo=UTC),  # 06:15:00 local
        "day_end": datetime(2022, 2, 21, 22, 59, 59, 500000, tzinfo=UTC),  # 21 Feb 23:59:59.5 local
        "next_day": datetime(2022, 2, 21, 23, 0, 0, tzinfo=UTC),  # 22 Feb 00:00 local
    }
    status = {
        "day_before_last_second": RunStatus.SUCCEEDED,
        "day_start": RunStatus.WARNINGS,
        "before_0615": RunStatus.FAILED,
        "at_0615": RunStatus.IN_PROGRESS,
        "day_end": RunStatus.QUEUED,
        "next_day": RunStatus.CANCELLED,
    }
    runs = {}
    for name in ("at_0615", "next_day", "day_before_last_second", "day_end", "day_start", "before_0615"):
        runs[name] = add_run(job, status[name], created_at=at[name], trigger=Trigger.HAND)
    other = add_run(make_job("Other"), RunStatus.SUCCEEDED, created_at=at["at_0615"])
    return job, {name: run.id for name, run in runs.items()}, other


def test_runs_newest_first_with_their_fields(dated_runs, client):
    job, run_ids, _ = dated_runs
    user = bot("reader")
    run = db.session.get(Run, run_ids["before_0615"])
    run.requested_by_id, run.message, run.stats = user.id, "boom", {"rows": 3}
    db.session.commit()
    response = client.get(f"/api/scheduled-jobs/{job.id}/runs", headers=token_for(user))
    assert ids(response) == [run_ids[name] for name in ("next_day", "day_end", "at_0615", "before_0615",
                                                        "day_start", "day_before_last_second")]
    failed = next(item for item in response.get_json() if item["id"] == run_ids["before_0615"])
    assert failed["status"] == "FAILED" and failed["detailedStatus"] == "failed"
    assert failed["jobId"] == job.id and failed["trigger"] == "hand" and failed["runBy"] == "reader"
    assert failed["message"] == "boom" and failed["statistics"] == {"rows": 3} and failed["files"] == []
    assert datetime.fromisoformat(failed["createdAt"]) == datetime(2022, 2, 21, 5, 14, 59, tzinfo=UTC)
    statuses = {item["id"]: item["status"] for item in response.get_json()}
    assert statuses[run_ids["day_start"]] == "SUCCEEDED"  # succeeded with warnings is a success
    assert statuses[run_ids["day_end"]] == "QUEUED" and statuses[run_ids["next_day"]] == "CANCELLED"


def test_runs_date_range_in_the_server_time_zone(dated_runs, client):
    job, r, _ = dated_runs
    headers = token_for(bot())
    url = f"/api/scheduled-jobs/{job.id}/runs"

    def listed(query):
        return set(ids(client.get(f"{url}?{query}", headers=headers)))

    def named(*names):
        return {r[name] for name in names}

    # A date alone: the whole local day, from 00:00 through 23:59:59.999999.
    assert listed("fromDate=20220221&toDate=20220221") == named("day_start", "before_0615", "at_0615", "day_end")
    assert listed("fromDate=20220221") == named("day_start", "before_0615", "at_0615", "day_end", "next_day")
    assert listed("toDate=20220221") == named("day_before_last_second", "day_start", "before_0615", "at_0615",
                                              "day_end")
    assert listed("toDate=20220220") == named("day_before_last_second")
    # Date and time: local wall time, bounds included.
    assert listed("fromDate=20220221T061500") == named("at_0615", "day_end", "next_day")
    assert listed("toDate=20220221T061500") == named("day_before_last_second", "day_start", "before_0615", "at_0615")
    assert listed("fromDate=20220221T061459&toDate=20220221T061500") == named("before_0615", "at_0615")
    assert listed("fromDate=20220221T061500&toDate=20220221T061500") == named("at_0615")
    assert listed("fromDate=20220222") == named("next_day")
    assert listed("fromDate=20300101") == set()
    assert listed("toDate=20000101") == set()
    # A range that ends before it starts holds no run, as one starting in the future does.
    assert listed("fromDate=20220222&toDate=20220221") == set()
    assert listed("fromDate=20220221T061501&toDate=20220221T061500") == set()
    # The ends of the calendar: 0001-01-01 in Amsterdam is before year 1 in UTC, and still a date.
    assert listed("fromDate=00010101") == named(*r)
    assert listed("fromDate=00010101&toDate=99991231T235959") == named(*r)


def test_runs_status_filter(dated_runs, client):
    job, r, _ = dated_runs
    headers = token_for(bot())
    url = f"/api/scheduled-jobs/{job.id}/runs"
    assert set(ids(client.get(f"{url}?status=SUCCEEDED", headers=headers))) == {r["day_before_last_second"],
                                                                                r["day_start"]}
    assert ids(client.get(f"{url}?status=IN_PROGRESS", headers=headers)) == [r["at_0615"]]
    assert ids(client.get(f"{url}?status=FAILED", headers=headers)) == [r["before_0615"]]
    assert ids(client.get(f"{url}?status=QUEUED", headers=headers)) == [r["day_end"]]
    assert ids(client.get(f"{url}?status=SUCCEEDED&fromDate=20220221&toDate=20220221", headers=headers)) == \
        [r["day_start"]]
    for item in client.get(f"{url}?status=SUCCEEDED", headers=headers).get_json():
        assert item["status"] == "SUCCEEDED"


def test_runs_limit_and_offset(dated_runs, client):
    job, r, _ = dated_runs
    headers = token_for(bot())
    url = f"/api/scheduled-jobs/{job.id}/runs"
    assert ids(client.get(f"{url}?limit=2", headers=headers)) == [r["next_day"], r["day_end"]]
    assert ids(client.get(f"{url}?limit=2&offset=2", headers=headers)) == [r["at_0615"], r["before_0615"]]
    assert ids(client.get(f"{url}?offset=100", headers=headers)) == []


def test_runs_come_a_page_at_a_time_and_a_new_run_shifts_no_page(ctx, client):
    job = make_job("Busy")
    same_moment = datetime(2022, 3, 1, 12, 0, tzinfo=UTC)  # equal creation times: the id decides
    made = [add_run(job, created_at=same_moment if i % 3 else datetime(2022, 3, 1, i, tzinfo=UTC)).id
            for i in range(10)]
    newest_first = [run.id for run in db.session.scalars(
        select(Run).where(Run.id.in_(made)).order_by(Run.created_at.desc(), Run.id.desc()))]
    headers = token_for(bot())
    url = f"/api/scheduled-jobs/{job.id}/runs"

    first = client.get(f"{url}?limit=4&status=SUCCEEDED", headers=headers)
    assert ids(first) == newest_first[:4]
    add_run(job)  # a run created meanwhile is newer than every page asked for from here on
    link = re.fullmatch(r'<([^>]+)>; rel="next"', first.headers["Link"]).group(1)
    assert parse_qs(urlsplit(link).query) == {"limit": ["4"], "status": ["SUCCEEDED"],
                                              "after": [first.headers["X-Next-Cursor"]]}
    pages, _ = follow_pages(client, link, headers)
    assert pages == [newest_first[4:8], newest_first[8:]]
    # The cursor also combines with offset (skipped after it), and the Link drops the offset.
    after = first.headers["X-Next-Cursor"]
    skipped = client.get(f"{url}?after={after}&offset=1&limit=2&_external=1&jobId=0&foo=bar", headers=headers)
    assert ids(skipped) == newest_first[5:7]
    assert parse_qs(urlsplit(skipped.headers["Link"][1:].split(">")[0]).query) == {
        "limit": ["2"], "after": [skipped.headers["X-Next-Cursor"]]}
    assert urlsplit(skipped.headers["Link"][1:].split(">")[0]).path == url


@pytest.mark.parametrize("query, names", [
    ("after=12", "after"),
    ("after=1645420499000000_0", "after"),
    ("after=999999999999999999_1", "after"),
    ("after=-999999999999999999_1", "after"),
    ("after=1645420499000000_2147483648", "after"),
    ("after=", "after"),
    ("fromDate=2022-02-21", "fromDate"),
    ("toDate=2022-02-21", "toDate"),
    ("fromDate=21022022", "fromDate"),
    ("fromDate=20221321", "fromDate"),
    ("fromDate=20220221T25", "fromDate"),
    ("fromDate=20220221T061500Z", "fromDate"),
    ("fromDate=2022221", "fromDate"),
    ("fromDate=", "fromDate"),
    ("toDate=00000101", "toDate"),
    ("fromDate=20220230", "fromDate"),
    ("fromDate=20220221T240000", "fromDate"),
    ("fromDate=\u0662\u0660\u0662\u0662\u0660\u0662\u0662\u0661", "fromDate"),  # Arabic-Indic digits
    ("status=DONE", "status"),
    ("status=succeeded", "status"),
    ("limit=0", "limit"),
    ("limit=5000", "limit"),
    ("limit=ten", "limit"),
    ("offset=-1", "offset"),
    ("offset=1000000000000000000000000", "offset"),
    ("limit=1000000000000000000000000", "limit"),
])
def test_bad_run_queries_answer_400_naming_the_parameter(ctx, client, query, names):
    job = make_job()
    response = client.get(f"/api/scheduled-jobs/{job.id}/runs?{query}", headers=token_for(bot()))
    body = assert_error(response, 400)
    assert names in body["message"], body


def test_run_list_of_a_job_out_of_sight_is_404_even_with_a_bad_query(ctx, client):
    job = make_job(domain=make_domain())
    headers = token_for(make_user(Role.DOMAIN_ADMIN, domain=make_domain()))
    assert_error(client.get(f"/api/scheduled-jobs/{job.id}/runs", headers=headers), 404)


# ---------------------------------------------------------------- one run

def test_one_run_only_under_its_own_job(dated_runs, client):
    job, r, other = dated_runs
    headers = token_for(bot())
    response = client.get(f"/api/scheduled-jobs/{job.id}/runs/{r['at_0615']}", headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == r["at_0615"] and body["jobId"] == job.id and body["status"] == "IN_PROGRESS"
    # Another job's run under this job's path, and an unknown run.
    assert_error(client.get(f"/api/scheduled-jobs/{job.id}/runs/{other.id}", headers=headers), 404)
    assert_error(client.get(f"/api/scheduled-jobs/{other.job_id}/runs/{r['at_0615']}", headers=headers), 404)
    assert_error(client.get(f"/api/scheduled-jobs/{job.id}/runs/{other.id + 1000}", headers=headers), 404)


def test_runs_of_hidden_or_deleted_jobs_are_404(ctx, client):
    mine, theirs = make_domain(), make_domain()
    their_job = make_job(domain=theirs)
    their_run = add_run(their_job)
    headers = token_for(make_user(Role.DOMAIN_ADMIN, domain=mine))
    assert_error(client.get(f"/api/scheduled-jobs/{their_job.id}/runs/{their_run.id}", headers=headers), 404)
    assert_error(client.get(f"/api/scheduled-jobs/{their_job.id}/runs/{their_run.id}/result-file",
                            headers=headers), 404)

    # A deleted job is gone from the API: its runs too, as its own address answers 404.
    deleted = make_job(domain=mine)
    run = add_run(deleted)
    deleted.deleted_at = utcnow()
    db.session.commit()
    assert_error(client.get(f"/api/scheduled-jobs/{deleted.id}", headers=headers), 404)
    assert_error(client.get(f"/api/scheduled-jobs/{deleted.id}/runs/{run.id}", headers=headers), 404)
    assert_error(client.get(f"/api/scheduled-jobs/{deleted.id}/runs/{run.id}/result-file", headers=headers), 404)


# ---------------------------------------------------------------- result files

def _file(run, relative, content=b"", name="result.csv", write=True):
    root = current_files_dir()
    if write:
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
    row = RunFile(run_id=run.id, job_id=run.job_id, name=name, path=relative, size=len(content),
                  content_type="text/csv")
    db.session.add(row)
    db.session.commit()
    return row


def current_files_dir():
    from flask import current_app

    return current_app.config["FILES_DIR"]


def test_result_file_of_a_finished_run(ctx, client):
    job = make_job()
    run = add_run(job, RunStatus.SUCCEEDED, finished_at=utcnow())
    content = b"id,name\n1,\xc3\xa9t\xc3\xa9\n"
    _file(run, f"runs/{run.id}/export.csv", content, name="export.csv")
    _file(run, f"runs/{run.id}/second.csv", b"second\n", name="second.csv")
    headers = token_for(bot())

    response = client.get(f"/api/scheduled-jobs/{job.id}/runs/{run.id}/result-file", headers=headers)
    assert response.status_code == 200
    assert response.data == content
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert "export.csv" in response.headers["Content-Disposition"]
    assert response.mimetype == "text/csv"
    # The run's details list its files.
    files = client.get(f"/api/scheduled-jobs/{job.id}/runs/{run.id}", headers=headers).get_json()["files"]
    assert [f["name"] for f in files] == ["export.csv", "second.csv"]
    assert files[0]["size"] == len(content) and files[0]["contentType"] == "text/csv"


def test_result_file_of_a_run_with_warnings_or_failure(ctx, client):
    job = make_job()
    headers = token_for(bot())
    for status in (RunStatus.WARNINGS, RunStatus.FAILED):
        run = add_run(job, status, finished_at=utcnow())
        _file(run, f"runs/{run.id}/partial.csv", b"partial\n")
        response = client.get(f"/api/scheduled-jobs/{job.id}/runs/{run.id}/result-file", headers=headers)
        assert response.status_code == 200 and response.data == b"partial\n"


def test_result_file_errors(ctx, client):
    job = make_job()
    headers = token_for(bot())
    url = "/api/scheduled-jobs/{}/runs/{}/result-file".format

    no_files = add_run(job, RunStatus.SUCCEEDED, finished_at=utcnow())
    body = assert_error(client.get(url(job.id, no_files.id), headers=headers), 404)
    assert "file" in body["message"].lower()

    for status in (RunStatus.IN_PROGRESS, RunStatus.QUEUED):
        running = add_run(job, status)
        _file(running, f"runs/{running.id}/partial.csv", b"partial\n")
        body = assert_error(client.get(url(job.id, running.id), headers=headers), 409)
        assert "finished" in body["message"]
        # A run still going with no file yet is also "not finished", not "no file".
        assert_error(client.get(url(job.id, add_run(job, status).id), headers=headers), 409)

    purged = add_run(job, RunStatus.SUCCEEDED, finished_at=utcnow())
    _file(purged, f"runs/{purged.id}/gone.csv", write=False)
    body = assert_error(client.get(url(job.id, purged.id), headers=headers), 404)
    assert "file" in body["message"].lower()

    assert_error(client.get(url(job.id, no_files.id + 1000), headers=headers), 404)


def test_result_file_never_leaves_the_files_directory(ctx, client, tmp_path):
    job = make_job()
    headers = token_for(bot())
    root = os.path.realpath(current_files_dir())
    secret = os.path.join(os.path.dirname(root), "secret.txt")
    with open(secret, "wb") as handle:
        handle.write(b"TOP SECRET")
    os.makedirs(os.path.join(root, "runs"), exist_ok=True)
    link = os.path.join(root, "runs", "link-to-secret.txt")
    if not os.path.lexists(link):
        os.symlink(secret, link)
    try:
        for relative in ("../../etc/passwd", "../secret.txt", "runs/../../secret.txt", secret, "/etc/passwd",
                         "runs/link-to-secret.txt", "", "."):
            run = add_run(job, RunStatus.SUCCEEDED, finished_at=utcnow())
            _file(run, relative, write=False)
            response = client.get(f"/api/scheduled-jobs/{job.id}/runs/{run.id}/result-file", headers=headers)
            assert_error(response, 404)
            assert b"TOP SECRET" not in response.data and b"root:" not in response.data
    finally:
        os.remove(link)
        os.remove(secret)


# ---------------------------------------------------------------- errors outside the routes

def test_unknown_paths_and_wrong_methods_answer_json(ctx, client):
    job = make_job()
    run = add_run(job)
    headers = token_for(bot())
    for path in ("/api", "/api/", "/api/nothing-here", "/api/scheduled-jobs/1/nothing",
                 "/api/scheduled-jobs/x/runs"):
        assert_error(client.get(path, headers=headers), 404)
        assert_error(client.get(path), 404)
    for method, path in (("DELETE", f"/api/scheduled-jobs/{job.id}"), ("PUT", f"/api/scheduled-jobs/{job.id}"),
                         ("POST", "/api/scheduled-jobs"), ("DELETE", f"/api/scheduled-jobs/{job.id}/runs"),
                         ("POST", f"/api/scheduled-jobs/{job.id}/runs/{run.id}"),
                         ("POST", f"/api/scheduled-jobs/{job.id}/runs/{run.id}/result-file"),
                         ("POST", "/api/openapi.json")):
        assert_error(client.open(path, method=method, headers=headers), 405)


def test_405_says_which_methods_are_allowed(ctx, client):
    job = make_job()
    response = client.delete(f"/api/scheduled-jobs/{job.id}/runs", headers=token_for(bot()))
    assert response.status_code == 405
    assert set(response.headers.get("Allow", "").replace(" ", "").split(",")) >= {"GET", "POST"}


def test_ui_pages_still_answer_html_errors(ctx, client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and not response.is_json


# ---------------------------------------------------------------- OpenAPI

SPEC_PATHS = {
    "/api/scheduled-jobs": {"get"},
    "/api/scheduled-jobs/{jobId}": {"get"},
    "/api/scheduled-jobs/{jobId}/runs": {"get", "post"},
    "/api/scheduled-jobs/{jobId}/runs/{runId}": {"get"},
    "/api/scheduled-jobs/{jobId}/runs/{runId}/result-file": {"get"},
}


def test_openapi_document(ctx, client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.is_json
    doc = response.get_json()
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "Firetime API"
    paths = {path: {m for m in ops if m in {"get", "post", "put", "patch", "delete"}}
             for path, ops in doc["paths"].items()}
    assert paths == SPEC_PATHS
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearerAuth"]
        ["description"]}
    assert doc["security"] == [{"bearerAuth": []}]

    runs = doc["paths"]["/api/scheduled-jobs/{jobId}/runs"]
    query = {p["name"] for p in runs["get"]["parameters"] if p["in"] == "query"}
    assert {"fromDate", "toDate", "status", "limit", "offset", "after"} <= query
    # Both lists are paged: a limit, a cursor, and the headers that lead to the next page.
    jobs = doc["paths"]["/api/scheduled-jobs"]["get"]
    assert {p["name"] for p in jobs["parameters"] if p["in"] == "query"} == {"limit", "after"}
    for listing in (jobs, runs["get"]):
        limit = next(p for p in listing["parameters"] if p["name"] == "limit")["schema"]
        assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 1000, 100)
        assert set(listing["responses"]["200"]["headers"]) == {"X-Next-Cursor", "Link"}
        assert listing["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    status = next(p for p in runs["get"]["parameters"] if p["name"] == "status")
    assert {"IN_PROGRESS", "SUCCEEDED", "FAILED"} <= set(status["schema"]["enum"])
    # The body may be absent.
    assert runs["post"]["requestBody"].get("required", False) is False
    assert "201" in runs["post"]["responses"]
    for code in ("400", "404", "409"):
        assert code in runs["post"]["responses"], code
    for path, methods in SPEC_PATHS.items():
        for method in methods:
            assert "401" in doc["paths"][path][method]["responses"], (path, method)
    for name in ("jobId", "runId"):
        params = doc["paths"]["/api/scheduled-jobs/{jobId}/runs/{runId}"]["get"].get("parameters", []) + \
            doc["paths"]["/api/scheduled-jobs/{jobId}/runs/{runId}"].get("parameters", [])
        assert any(p["name"] == name and p["in"] == "path" for p in params), name


def test_openapi_document_is_generated_from_the_code(ctx, client):
    """The document lists the routes the app actually serves under /api, and the schemas the code answers with."""
    import re

    from webapp.api.schemas import JobSchema, RunSchema

    served = {}
    for rule in ctx.url_map.iter_rules():
        if rule.endpoint.startswith("api."):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            served[path] = {m.lower() for m in rule.methods} - {"head", "options"}
    doc = client.get("/api/openapi.json").get_json()
    assert served == SPEC_PATHS
    assert {path: {m for m in ops if m != "parameters"} for path, ops in doc["paths"].items()} == served
    schemas = doc["components"]["schemas"]
    assert set(schemas["Job"]["properties"]) == set(JobSchema().fields)
    assert set(schemas["Run"]["properties"]) == set(RunSchema().fields)
    one_job = doc["paths"]["/api/scheduled-jobs/{jobId}"]["get"]["responses"]["200"]
    assert one_job["content"]["application/json"]["schema"]["$ref"].endswith("/Job")


# ---------------------------------------------------------------- end to end with a worker

def test_post_run_poll_and_download_with_a_real_worker(ctx, client, worker):
    job = make_job("API self-test", params={"duration": 0.3, "lines_per_second": 10, "output_csv": True})
    caller = make_user(Role.SYSTEM, username="e2e-bot")
    headers = token_for(caller)

    response = client.post(f"/api/scheduled-jobs/{job.id}/runs", headers=headers, json={"args": ""})
    assert response.status_code == 201, response.get_data(as_text=True)
    run_id = response.get_json()["id"]
    url = f"/api/scheduled-jobs/{job.id}/runs/{run_id}"

    def finished():
        db.session.expire_all()
        body = client.get(url, headers=headers).get_json()
        return body if body["status"] not in ("QUEUED", "IN_PROGRESS") else None

    body = wait_for(finished, 30, message=f"run {run_id} to finish")
    assert body["status"] == "SUCCEEDED", body
    assert body["runBy"] == "e2e-bot" and body["trigger"] == "api"
    assert body["startedAt"] and body["finishedAt"] and body["worker"]
    assert body["progress"] == 100
    assert [f["name"] for f in body["files"]] == ["selftest.csv"]

    listed = client.get(f"/api/scheduled-jobs/{job.id}/runs?status=SUCCEEDED", headers=headers)
    assert ids(listed) == [run_id]
    assert client.get(f"/api/scheduled-jobs/{job.id}", headers=headers).get_json()["lastRunStatus"] == "SUCCEEDED"

    download = client.get(f"{url}/result-file", headers=headers)
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert "selftest.csv" in download.headers["Content-Disposition"]
    lines = download.get_data(as_text=True).splitlines()
    assert lines[0] == "line,text"
    assert len(lines) >= 2 and lines[1] == "1,Self-test line 1"
    assert len(lines) - 1 == body["statistics"]["lines"]
