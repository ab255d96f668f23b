"""nginx in front of Firetime as the README's production section sets it up: the site of
docs/deploy/nginx.conf, its documented ports replaced, in a main configuration of its own (a
private prefix, no daemon), for bench/viewers.py --proxy and tests/integration/test_serving.py."""
import os
import shutil
from pathlib import Path

SITE = Path(__file__).resolve().parent.parent / "docs" / "deploy" / "nginx.conf"
INSTALL = "apt-get install nginx"


def binary() -> str | None:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    return found if os.access(found, os.X_OK) else None


def configure(prefix: Path, host: str, port: int, pages_port: int, streams_port: int) -> Path:
    """Write prefix/nginx.conf (the documented site listening on host:port, sending to the given
    ports) and return its path; run it with `nginx -p prefix -c <path>`."""
    site = SITE.read_text()
    for documented, actual in (("listen 80;", f"listen {host}:{port};"), ("127.0.0.1:8000", f"{host}:{pages_port}"),
                               ("127.0.0.1:8001", f"{host}:{streams_port}")):
        if documented not in site:
            raise ValueError(f"{SITE} no longer says {documented!r}")
        site = site.replace(documented, actual)
    prefix.mkdir(parents=True, exist_ok=True)
    temp = " ".join(f"{kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"{'user root; ' if os.geteuid() == 0 else ''}daemon off; worker_processes 1; pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; {temp}\n{site}\n}}\n")
    return conf
