"""What /healthz reports: can we reach the database and Redis, are workers and a scheduler up."""
import time

from rq import Worker
from sqlalchemy import text

from webapp.extensions import db, redis_client
from webapp.scheduling.service import LAST_PASS_KEY


def check() -> tuple[dict, bool]:
    report = {"database": {"ok": False}, "redis": {"ok": False},
              "workers": {"ok": False, "count": 0}, "scheduler": {"ok": False}}
    try:
        db.session.execute(text("SELECT 1"))
        report["database"] = {"ok": True}
    except Exception as exc:
        report["database"] = {"ok": False, "error": type(exc).__name__}
    finally:
        db.session.rollback()
    conn = redis_client.conn
    try:
        conn.ping()
        report["redis"] = {"ok": True}
        workers = Worker.all(connection=conn)
        report["workers"] = {"ok": bool(workers), "count": len(workers),
                             "names": sorted(w.name for w in workers)}
        last = conn.get(LAST_PASS_KEY)
        age = time.time() - float(last) if last else None
        report["scheduler"] = {"ok": age is not None and age < 30,
                               "last_pass_seconds_ago": round(age, 1) if age is not None else None}
    except Exception as exc:
        report["redis"] = {"ok": False, "error": type(exc).__name__}
    healthy = report["database"]["ok"] and report["redis"]["ok"]
    return report, healthy
