"""Throttling of guesses: failed sign-ins per account and per address, bad API tokens per address.

Every attempt is counted before its password is checked (atomically, so a burst of concurrent
guesses cannot slip under the limit) and a right one is given back, so only failures stay
counted; a caller over a limit is refused before its password or token is checked, so guessing
stops while a right sign-in is never slowed. The limits are short (minutes),
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
        return self._with_storage(lambda strategy: 0 if strategy.test(item, *key) else _reset_in(strategy, item, key))

    def take(self, limit: str, *key: str) -> int:
        """Count one attempt now, then say as wait_seconds does whether it was within the limit.
        Counting first is one atomic increment, so attempts sent at the same moment cannot all
        pass a check made before any of them was counted."""
        item = parse(limit)
        return self._with_storage(lambda strategy: 0 if strategy.hit(item, *key) else _reset_in(strategy, item, key))

    def give_back(self, limit: str, *key: str) -> None:
        """Undo one counted attempt (a sign-in that turned out right is not a failure)."""
        item = parse(limit)
        self._with_storage(lambda strategy: strategy.hit(item, *key, cost=-1))

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


def _reset_in(strategy, item, key) -> int:
    reset_at, _ = strategy.get_window_stats(item, *key)
    return max(1, math.ceil(reset_at - time.time()))


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


def _sign_in_limits(username: str):
    config = current_app.config
    return ((config["LOGIN_FAILURES_PER_ACCOUNT"], _account(username), "for this account"),
            (config["LOGIN_FAILURES_PER_ADDRESS"], _address("sign-in-address"), "from your address"))


def sign_in_attempt(username: str) -> tuple[str, int] | None:
    """Count a sign-in attempt against the account and the address before its password is
    checked; (message, seconds to wait) when either is over its limit, and the password must
    then not be checked at all."""
    for limit, key, whose in _sign_in_limits(username):
        seconds = _counter().take(limit, *key)
        if seconds:
            return f"Too many failed sign-ins {whose}; try again in {_in_minutes(seconds)}.", seconds
    return None


def sign_in_succeeded(username: str) -> None:
    """The attempt was right: it does not count as a failure."""
    for limit, key, _ in _sign_in_limits(username):
        _counter().give_back(limit, *key)


def api_token_lock() -> int:
    """Seconds this address must wait before the API looks at its tokens again (0: none)."""
    return _counter().wait_seconds(current_app.config["API_TOKEN_FAILURES_PER_ADDRESS"], *_address("api-address"))


def api_token_failed() -> None:
    _counter().count(current_app.config["API_TOKEN_FAILURES_PER_ADDRESS"], *_address("api-address"))
