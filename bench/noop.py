"""A job that does nothing, for measuring what a queue and its worker cost by themselves.

RQ imports it by its dotted path, `bench.noop.noop`, so the worker must run with the
repository root on sys.path (bench/throughput.py starts it there)."""


def noop(*args, **kwargs):
    return None
