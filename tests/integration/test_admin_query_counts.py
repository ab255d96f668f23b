"""The audit page and the admin lists make as many SQL statements with 30 rows as with 3: what a
row shows of related objects (a user's domain and supervised domains, a domain's jobs and users)
is loaded with the page, not once per row."""
from types import SimpleNamespace

from tests.factories import make_domain, make_job, make_user
from tests.integration.test_query_counts import _quick_password_hashes, statements  # noqa: F401
from webapp.extensions import db
from webapp.models import Role
from webapp.models.audit import record


def _add(app, start, stop):
    with app.app_context():
        for i in range(start, stop):
            domain = make_domain(f"Site {i:02d}")
            other = make_domain(f"Other {i:02d}")
            user = make_user(Role.SYSADMIN, domain=domain, supervised=[domain, other], username=f"member{i:02d}")
            job = make_job(f"Job {i:02d}", domain=domain)
            record("edit", "job", job, actor=user, before={"n": i}, after={"n": i + 1}, message=f"row {i:02d}")
        db.session.commit()


def test_audit_and_admin_lists_make_as_many_statements_with_30_rows_as_with_3(app, login_as):
    with app.app_context():
        make_user(Role.SUPERADMIN, username="root")
    client = login_as(SimpleNamespace(username="root"))
    pages = {"audit": "/audit/", "audit filtered": "/audit/?object_type=job&date_from=2000-01-01",
             "users": "/admin/users", "domains": "/admin/domains"}
    counted, shown = {}, {}
    for rows, (start, stop) in ((3, (0, 3)), (30, (3, 30))):
        _add(app, start, stop)
        for name, url in pages.items():
            client.get(url)
            with statements(app) as sent:
                response = client.get(url)
            assert response.status_code == 200
            counted[name, rows], shown[name, rows] = len(sent), response.get_data(as_text=True)
    assert {name: counted[name, 30] for name in pages} == {name: counted[name, 3] for name in pages}
    for rows in (3, 30):
        assert shown["audit", rows].count('<p class="message">row ') == rows
        assert shown["users", rows].count(", Site ") == rows  # "Other nn, Site nn": supervised shown
        assert shown["domains", rows].count("1 job ·") == rows
