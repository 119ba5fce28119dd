"""The console's users, their sessions, and the audit of what they changed.

Passwords are hashed with scrypt (``hashlib.scrypt``, memory-hard, in the standard library), each
with its own salt; the hash string names its parameters so they can be raised later without
breaking old hashes. Sessions live server-side: the browser holds a random token, the table only
its SHA-256, so a leaked database cannot be replayed as a cookie. Each session has its own CSRF
token, which every form posts back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import Column, DateTime, Engine, ForeignKey, Integer, String, Table, Text, delete, select, update
from sqlalchemy.exc import IntegrityError

from omnicart.storage import metadata, utc

Role = Literal["admin", "editor", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "editor", "viewer")
SESSION_LIFETIME = timedelta(hours=12)

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1

console_users = Table(
    "console_users",
    metadata,
    Column("username", String(200), primary_key=True),
    Column("password_hash", String(300), nullable=False),
    Column("role", String(20), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True, comment="SHA-256 of the cookie's token."),
    Column("username", String(200), ForeignKey("console_users.username", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

console_audit = Table(
    "console_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("username", String(200), nullable=False),
    Column("action", String(40), nullable=False, comment="published, paused, resumed, test_send"),
    Column("journey", String(200), nullable=False, index=True),
    Column("version", String(64), nullable=True),
    Column("detail", Text, nullable=True),
)


class UserExists(ValueError):
    """A user of that name exists already."""


@dataclass(frozen=True)
class User:
    username: str
    role: Role

    @property
    def can_change(self) -> bool:
        """Editors and admins publish, pause and send tests; viewers only look."""
        return self.role in ("admin", "editor")


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    username: str
    action: str
    journey: str
    version: str | None
    detail: str | None


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash``, base64 parts."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return "$".join(("scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)))


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` hashes to ``stored`` (in constant time for equal lengths)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ConsoleUsers:
    """Users, sessions and the audit trail, in the product database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, username: str, password: str, role: Role) -> User:
        if role not in ROLES:
            raise ValueError(f"role is one of {', '.join(ROLES)}")
        try:
            with self.engine.begin() as connection:
                connection.execute(console_users.insert().values(
                    username=username, password_hash=hash_password(password), role=role, created_at=datetime.now(UTC)))
        except IntegrityError:
            raise UserExists(f"a user named {username!r} exists already") from None
        return User(username, role)

    def set_password(self, username: str, password: str) -> bool:
        with self.engine.begin() as connection:
            changed = connection.execute(update(console_users).where(console_users.c.username == username).values(
                password_hash=hash_password(password))).rowcount
            connection.execute(delete(console_sessions).where(console_sessions.c.username == username))
        return bool(changed)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password is theirs. An unknown name costs a hash too, so timing tells nothing."""
        with self.engine.connect() as connection:
            row = connection.execute(select(console_users).where(console_users.c.username == username)).first()
        if row is None:
            verify_password(password, _DUMMY_HASH)
            return None
        return User(row.username, row.role) if verify_password(password, row.password_hash) else None

    def start_session(self, user: User, now: datetime | None = None) -> tuple[str, Session]:
        """A new session: the cookie's token (only its hash is stored) and the session."""
        now = now or datetime.now(UTC)
        token = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(32), now + SESSION_LIFETIME)
        with self.engine.begin() as connection:
            connection.execute(delete(console_sessions).where(console_sessions.c.expires_at < now))
            connection.execute(console_sessions.insert().values(
                token_hash=_token_hash(token), username=user.username, csrf_token=session.csrf_token,
                created_at=now, expires_at=session.expires_at))
        return token, session

    def session(self, token: str, now: datetime | None = None) -> Session | None:
        """The live session of a cookie's token; None when unknown or expired."""
        now = now or datetime.now(UTC)
        query = select(console_sessions, console_users.c.role).join(
            console_users, console_users.c.username == console_sessions.c.username
        ).where(console_sessions.c.token_hash == _token_hash(token))
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None or utc(row.expires_at) <= now:
            return None
        return Session(User(row.username, row.role), row.csrf_token, utc(row.expires_at))

    def end_session(self, token: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(console_sessions).where(console_sessions.c.token_hash == _token_hash(token)))

    def record(self, user: User, action: str, journey: str, version: str | None, detail: str | None = None) -> None:
        """Who changed what: every publish, pause, resume and test send from the console."""
        with self.engine.begin() as connection:
            connection.execute(console_audit.insert().values(
                at=datetime.now(UTC), username=user.username, action=action, journey=journey, version=version,
                detail=detail))

    def audit(self, journey: str | None = None, limit: int = 50) -> list[AuditEntry]:
        """The latest changes, newest first."""
        query = select(console_audit).order_by(console_audit.c.id.desc()).limit(limit)
        if journey is not None:
            query = query.where(console_audit.c.journey == journey)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [AuditEntry(utc(row.at), row.username, row.action, row.journey, row.version, row.detail) for row in rows]


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
