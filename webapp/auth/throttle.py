"""Throttling of guesses: failed sign-ins per account and per address, bad API tokens per address.

Only failures are counted, and a caller over a limit is refused before its password or token is
checked, so guessing stops while a right sign-in is never slowed. The limits are short (minutes),
so that an attacker cannot lock an administrator out for long.

The counts live in Flask-Limiter's storage, the Redis of the app. Redis is a cache that can
fail: while it does, the counts are kept in this process's memory, and signing in goes on.
"""
import hashlib
import logging
import math
import time

from flask import current_app, request
from limits import parse
from limits.errors import StorageError
from limits.storage import MemoryStorage

log = logging.getLogger(__name__)

RETRY_STORAGE_SECONDS = 5  # after a storage error, count in memory this long before trying Redis again


class FailureCounter:
    """Counts of failures under Flask-Limiter's limit strings ("5 per 5 minutes")."""

    def __init__(self, limiter):
        self._limiter = limiter
        self._memory = None  # the stand-in strategy while the storage is away
        self._storage_back_at = 0.0

    def wait_seconds(self, limit: str, *key: str) -> int:
        """0 while the key is under the limit, else the seconds until it may try again."""
        item = parse(limit)

        def check(strategy):
            if strategy.test(item, *key):
                return 0
            reset_at, _ = strategy.get_window_stats(item, *key)
            return max(1, math.ceil(reset_at - time.time()))

        return self._with_storage(check)

    def count(self, limit: str, *key: str) -> None:
        item = parse(limit)
        self._with_storage(lambda strategy: strategy.hit(item, *key))

    def _with_storage(self, operation):
        if time.monotonic() >= self._storage_back_at:
            try:
                result = operation(self._limiter.limiter)
            except StorageError as exc:
                log.warning("throttle storage unreachable, counting in memory for now: error=%s", exc.storage_error)
                self._storage_back_at = time.monotonic() + RETRY_STORAGE_SECONDS
            else:
                self._memory = None  # storage answers again: the outage's stand-in counts are done
                return result
        if self._memory is None:
            self._memory = type(self._limiter.limiter)(MemoryStorage())
        return operation(self._memory)


def _counter() -> FailureCounter:
    return current_app.extensions["failure_counter"]


def _account(username: str) -> tuple[str, ...]:
    # Hashed: a user name field sometimes receives a password typed in the wrong place.
    return "sign-in-account", hashlib.sha256(username.casefold().encode()).hexdigest()[:32]


def _address(kind: str) -> tuple[str, ...]:
    return kind, request.remote_addr or "unknown"


def _in_minutes(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute" if minutes == 1 else f"{minutes} minutes"


def sign_in_lock(username: str) -> tuple[str, int] | None:
    """(message, seconds to wait) when this account or this address may not try to sign in now."""
    config = current_app.config
    for limit, key, whose in ((config["LOGIN_FAILURES_PER_ACCOUNT"], _account(username), "for this account"),
                              (config["LOGIN_FAILURES_PER_ADDRESS"], _address("sign-in-address"),
                               "from your address")):
        seconds = _counter().wait_seconds(limit, *key)
        if seconds:
            return f"Too many failed sign-ins {whose}; try again in {_in_minutes(seconds)}.", seconds
    return None


def sign_in_failed(username: str) -> None:
    config = current_app.config
    _counter().count(config["LOGIN_FAILURES_PER_ACCOUNT"], *_account(username))
    _counter().count(config["LOGIN_FAILURES_PER_ADDRESS"], *_address("sign-in-address"))


def api_token_lock() -> int:
    """Seconds this address must wait before the API looks at its tokens again (0: none)."""
    return _counter().wait_seconds(current_app.config["API_TOKEN_FAILURES_PER_ADDRESS"], *_address("api-address"))


def api_token_failed() -> None:
    _counter().count(current_app.config["API_TOKEN_FAILURES_PER_ADDRESS"], *_address("api-address"))
