"""The child process that runs one support script: `python -m webapp.support.child <parent pid>`,
started by the work horse (webapp/support/sandbox.py) in a session of its own, in a private
temporary directory, with an environment that holds no secret.

What it needs comes as one JSON document on stdin (script, configuration, run, run-as user,
database, files directory, memory limit, the channel's fd). The script runs with the names of
scriptctx.ScriptContext in its globals; its prints go to stdout and stderr, which the horse turns
into log lines; its reports and its end go to the horse on the channel. The last message is
always one `end` (ok, exception, exit, oom); a child that dies without it (killed, os._exit)
is judged by the horse from its exit status."""
import os
import sys

FILENAME = "<script>"  # the script's name in tracebacks; its lines are in linecache under it
PR_SET_PDEATHSIG = 1
# Written when the script runs out of memory, prepared before it starts: by then building a
# message may itself fail.
OUT_OF_MEMORY = b'{"t": "end", "status": "oom"}\n'
_channel_fd = None  # for OUT_OF_MEMORY, known once the setup is read


def main():
    global _channel_fd
    try:
        _die_with_parent(int(sys.argv[1]))
        import json

        setup = json.loads(_read_all(0))
        _channel_fd = setup["channel_fd"]
        _stdin_from_devnull()
        run(setup)
    except MemoryError:
        if _channel_fd is not None:
            os.write(_channel_fd, OUT_OF_MEMORY)
    # Not sys.exit: the script's threads are not waited for, and nothing is written after the end.
    os._exit(0)


def run(setup: dict):
    """Run the script and send its end: ok, exception, exit (sys.exit with an error) or oom."""
    import builtins
    import linecache

    from webapp.support.scriptctx import Channel, ScriptContext, counted_stream

    sys.stdout, out = counted_stream(1)
    sys.stderr, err = counted_stream(2)
    channel = Channel(setup["channel_fd"], out, err)
    ctx = ScriptContext(channel, setup)
    text = setup["script"]
    linecache.cache[FILENAME] = (len(text), None, text.splitlines(True), FILENAME)
    scope = {"__name__": "__main__", "__builtins__": builtins, **ctx.names()}
    end = {"status": "ok"}
    try:
        code = compile(text, FILENAME, "exec")
        channel.send("start", rss=_own_memory("VmRSS"), limit=_limit_memory(setup["memory_mb"]))
        exec(code, scope)  # noqa: S102  (running it is the point: support engineers' scripts)
    except SystemExit as exc:
        end = _exit_end(exc.code)
    except MemoryError:
        raise
    except BaseException as exc:  # noqa: BLE001  (KeyboardInterrupt too: the run says what ended it)
        end = _exception_end(exc)
    try:
        ctx.finish(end["status"] == "ok")
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001  (the commit failed: the run fails with why)
        end = _exception_end(exc)
    channel.send("end", **end)


def _exit_end(code) -> dict:
    """sys.exit(): None and 0 are success; a number is the exit code; anything else is printed
    and means 1, as Python does."""
    if code is None or code == 0:
        return {"status": "ok"}
    if isinstance(code, int):
        return {"status": "exit", "code": int(code), "text": ""}
    return {"status": "exit", "code": 1, "text": str(code)}


def _exception_end(exc: BaseException) -> dict:
    """`Type: text` and the traceback from the script's first frame (this module's frames are
    not the script's business); the script's lines come from linecache."""
    import traceback

    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != FILENAME:
        tb = tb.tb_next
    return {"status": "exception", "type": type(exc).__name__, "text": str(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, tb)).rstrip("\n")}


def _limit_memory(megabytes: int) -> int:
    """Cap the address space at what this process has mapped now, with the interpreter and the
    child's imports, plus the script's limit, so that the limit is what the script may use. The
    base is measured, not assumed: about 15 MiB (12 MiB resident) on x86-64 with MALLOC_ARENA_MAX=2 (the sandbox
    sets it: glibc would reserve 64 MiB of address space per thread arena otherwise), more if
    the site packages change. Modules the script imports (the database: Flask, SQLAlchemy and
    the models, about 100 MiB of address space) count against its limit. Soft and hard alike,
    so the script cannot raise it. Returns the limit in bytes."""
    import resource

    limit = _own_memory("VmSize") + (megabytes << 20)
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit


def _own_memory(field: str) -> int:
    """VmRSS or VmSize of this process, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _die_with_parent(parent: int):
    """Killed when the work horse dies (stopped, killed, out of memory), so no script outlives
    its run. Checked after: the horse may have died before the call."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _stdin_from_devnull():
    """The setup came on stdin; the script reads an empty stdin, not a half-read pipe."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


if __name__ == "__main__":
    main()
