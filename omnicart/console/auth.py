"""Who is asking: the session behind the cookie, the CSRF check on every change, the roles, and a
light brake on guessing passwords."""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

from fastapi import HTTPException, Request

from omnicart.console.users import ConsoleUsers, Session

SESSION_COOKIE = "omnicart_console"
LOGIN_CSRF_COOKIE = "omnicart_console_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class LoginRequired(Exception):
    """No live session: the page answers with a redirect to the login form."""


class LoginThrottle:
    """At most ``attempts`` failed logins per client address and user name in ``window`` seconds:
    enough for a person who mistypes, slow for a script that guesses."""

    def __init__(self, attempts: int = 5, window: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.window = window
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def blocked(self, client: str, username: str) -> bool:
        with self._lock:
            failures = self._recent((client, username.lower()))
            return len(failures) >= self.attempts

    def failed(self, client: str, username: str) -> None:
        with self._lock:
            self._recent((client, username.lower())).append(self._clock())

    def succeeded(self, client: str, username: str) -> None:
        with self._lock:
            self._failures.pop((client, username.lower()), None)

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] <= self._clock() - self.window:
            failures.popleft()
        return failures


def current_session(request: Request) -> Session:
    """The request's session, or ``LoginRequired``."""
    users: ConsoleUsers = request.app.state.users
    token = request.cookies.get(SESSION_COOKIE)
    session = users.session(token) if token else None
    if session is None:
        raise LoginRequired
    return session


async def posting_session(request: Request) -> Session:
    """The session of a form any role may post (log out, preview): its CSRF token must match."""
    session = current_session(request)
    form = await request.form()
    sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not secrets.compare_digest(sent, session.csrf_token):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page and try again")
    return session


async def changing_session(request: Request) -> Session:
    """The session of a request that changes something: CSRF as for any post, and its user may
    change things (editor or admin)."""
    session = await posting_session(request)
    if not session.user.can_change:
        raise HTTPException(403, f"{session.user.role} accounts can look but not change anything")
    return session
