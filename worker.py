"""Entry point for background processes.

    python worker.py                  an RQ worker on every Firetime queue
    python worker.py --queues a,b     a worker on the named queues, in that order
    python worker.py scheduler        the scheduler (fires planned occurrences, housekeeping)
"""
import argparse
import logging
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description="Firetime worker and scheduler.")
    parser.add_argument("role", nargs="?", choices=["worker", "scheduler"], default="worker")
    parser.add_argument("--queues", help="comma-separated queue names (default: all)")
    parser.add_argument("--burst", action="store_true", help="stop when there is nothing left to do")
    options = parser.parse_args(argv)

    from webapp import create_app
    from webapp.extensions import redis_client

    app = create_app()
    logging.getLogger().setLevel(logging.INFO)
    # The app context stays pushed for the life of the process; forked work horses inherit it.
    app.app_context().push()
    conn = redis_client.conn
    if options.role == "scheduler":
        from webapp.scheduling.service import run_scheduler

        run_scheduler(app, conn, burst=options.burst)
        return 0
    from webapp.execution.worker import run_worker
    from webapp.jobtypes.registry import queue_names

    queues = options.queues.split(",") if options.queues else queue_names()
    run_worker(queues, conn, burst=options.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
