"""Console sessions (both databases): signing in through the API login's own check and
throttle, the idle and absolute ends on a clock the tests move, the ends a disable or a
password change brings, logout, revocation of one's own sessions, the CSRF token, the
token kept hashed only, and the prune."""

from __future__ import annotations

import hashlib
import logging
import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from tests.auth.conftest import LOGIN
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD, create_user
from tests.prometheus_watch import Watch
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth import console_sessions
from tgfleet.auth import service as auth_service
from tgfleet.auth import users as users_module
from tgfleet.auth.exceptions import (
    ConsoleSessionNotFound,
    InvalidCredentials,
    InvalidToken,
    LoginThrottled,
    UserDisabled,
)
from tgfleet.auth.permissions import Permission
from tgfleet.auth.service import ConsoleSession, OpenedConsoleSession, Security
from tgfleet.config import Settings
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.models import AuditRecord, LoginThrottle
from tgfleet.models import ConsoleSession as ConsoleSessionRow

CONTEXT = AuditContext(actor="user:vera", ip="203.0.113.7", request_id="req-1")
IP = "203.0.113.7"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"
IDLE = 1800
MAX = 43200


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """The suite's settings, with a throttle block long enough that no test races it."""
    return make_settings(db_url, tmp_path / "data", login_throttle_base_seconds=600.0)


class Clock:
    """The console sessions' clock, ``offset`` ahead of the real one."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Moves the time the console sessions judge expiry by (no sleeps)."""
    moved = Clock()
    monkeypatch.setattr(console_sessions, "utcnow", moved.now)
    return moved


@dataclass(frozen=True)
class Console:
    """The console sessions' services, each call in its own unit of work as a request's."""

    sessionmaker: async_sessionmaker[AsyncSession]
    security: Security

    def unit(self) -> AbstractAsyncContextManager[AsyncSession]:
        return unit_of_work(self.sessionmaker)

    async def open(
        self,
        username: str = "vera",
        password: str = DEFAULT_PASSWORD,
        user_agent: str | None = BROWSER,
    ) -> OpenedConsoleSession:
        async with self.unit() as session:
            return await auth_service.open_console_session(
                session,
                self.security,
                username=username,
                password=password,
                ip=IP,
                user_agent=user_agent,
                request_id="req-1",
            )

    async def resolve(self, token: str) -> ConsoleSession:
        async with self.unit() as session:
            return await auth_service.console_session(session, self.security, token)

    async def close(self, token: str) -> None:
        async with self.unit() as session:
            await auth_service.close_console_session(session, token, CONTEXT)

    async def row(self, id_: uuid.UUID) -> ConsoleSessionRow:
        async with self.unit() as session:
            row = await session.get(ConsoleSessionRow, id_)
            assert row is not None
            return row

    async def ids(self) -> set[uuid.UUID]:
        """The ids of every console session row."""
        async with self.unit() as session:
            return set((await session.execute(select(ConsoleSessionRow.id))).scalars().all())

    async def audit(self, action: str) -> list[AuditRecord]:
        async with self.unit() as session:
            rows = await session.execute(
                select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)
            )
            return list(rows.scalars().all())


@pytest.fixture
async def console(sessionmaker: async_sessionmaker[AsyncSession], security: Security) -> Console:
    """The services, and the users ``vera`` (viewer) and ``root`` (admin), both with the
    default password."""
    await create_user(sessionmaker, security, username="vera", role="viewer")
    await create_user(sessionmaker, security, username="root", role="admin")
    return Console(sessionmaker, security)


def _denied(reason: str) -> Watch:
    return Watch(count=("tgfleet_auth_denied_total", {"reason": reason}))


class TestOpen:
    async def test_opens_a_session_for_the_right_password(self, console: Console) -> None:
        """The right password opens a session: a console principal with the user's role,
        ends after the configured times, a row with the client's address and browser, and
        an ``auth.login`` success audited with ``via: console``."""
        opened = await console.open()
        assert len(opened.token) >= 43  # 32 random bytes, URL-safe base64
        got = opened.session
        principal = got.principal
        assert (principal.username, principal.role, principal.via) == ("vera", "viewer", "console")
        assert principal.actor == "user:vera"
        assert Permission.ACCOUNT_READ in principal.permissions
        assert got.expires_at - got.created_at == timedelta(seconds=MAX)
        assert got.idle_expires_at - got.created_at == timedelta(seconds=IDLE)
        row = await console.row(got.id)
        assert (row.user_id, row.ip, row.user_agent) == (principal.user_id, IP, BROWSER)
        assert row.revoked_at is None
        again = await console.resolve(opened.token)
        assert (again.id, again.principal) == (got.id, principal)
        (login,) = await console.audit("auth.login")
        assert (login.result, login.actor, login.ip) == ("success", "user:vera", IP)
        assert login.details == {"username": "vera", "via": "console"}

    async def test_user_agent_is_cut(self, console: Console) -> None:
        opened = await console.open(user_agent="x" * 500)
        row = await console.row(opened.session.id)
        assert row.user_agent == "x" * 200

    async def test_wrong_password_and_unknown_user_are_refused(self, console: Console) -> None:
        """Both get the one InvalidCredentials, open nothing, and are audited as console
        login failures with their reason."""
        for username, password in (("vera", "wrong wrong wrong"), ("nobody", DEFAULT_PASSWORD)):
            with pytest.raises(InvalidCredentials):
                await console.open(username=username, password=password)
        assert await console.ids() == set()
        failures = await console.audit("auth.login")
        assert [(r.result, r.details) for r in failures] == [
            ("failure", {"username": "vera", "reason": "bad_password", "via": "console"}),
            ("failure", {"username": "nobody", "reason": "unknown_user", "via": "console"}),
        ]

    async def test_disabled_user_is_refused(self, console: Console) -> None:
        async with console.unit() as session:
            await auth_service.set_user_disabled(session, CONTEXT, "vera", disabled=True)
        with pytest.raises(UserDisabled):
            await console.open()
        assert await console.ids() == set()
        (refused,) = await console.audit("auth.login")
        assert refused.result == "failure"
        assert refused.details == {"username": "vera", "reason": "disabled", "via": "console"}


class TestSharedThrottle:
    async def test_console_failures_block_the_api_login(
        self, client: httpx.AsyncClient, console: Console
    ) -> None:
        """Five wrong console passwords count on the same ``user:vera`` key as the API's:
        the API login with the right password is then refused with 429."""
        for _ in range(5):
            with pytest.raises(InvalidCredentials):
                await console.open(password="wrong wrong wrong")
        async with console.unit() as session:
            counter = await session.get(LoginThrottle, "user:vera")
            assert counter is not None
            assert counter.failures == 5
            assert counter.blocked_until is not None
        api = await client.post(LOGIN, json={"username": "vera", "password": DEFAULT_PASSWORD})
        assert api.status_code == 429, api.text
        assert api.json()["error"] == "login_throttled"

    async def test_api_failures_block_the_console(
        self, client: httpx.AsyncClient, console: Console
    ) -> None:
        """Four API failures and one console failure reach the threshold together; the
        right password on the console is then throttled, and audited so."""
        for _ in range(4):
            body = {"username": "vera", "password": "wrong wrong wrong"}
            assert (await client.post(LOGIN, json=body)).status_code == 401
        with pytest.raises(InvalidCredentials):
            await console.open(password="wrong wrong wrong")
        with pytest.raises(LoginThrottled) as throttled:
            await console.open()
        assert throttled.value.retry_after > 0
        last = (await console.audit("auth.login"))[-1]
        assert last.details == {"username": "vera", "reason": "throttled", "via": "console"}


class TestExpiry:
    async def test_idle_timeout(self, console: Console, clock: Clock) -> None:
        """A request within the idle timeout keeps the session (and moves its idle end);
        a pause past it ends the session, counted as expired_token."""
        opened = await console.open()
        clock.advance(IDLE - 1)
        kept = await console.resolve(opened.token)
        assert kept.idle_expires_at > opened.session.idle_expires_at
        row = await console.row(opened.session.id)
        assert row.last_seen_at - row.created_at >= timedelta(seconds=IDLE - 1)
        clock.advance(IDLE - 1)
        await console.resolve(opened.token)
        clock.advance(IDLE + 1)
        watch = _denied("expired_token")
        with pytest.raises(InvalidToken, match="expired after a while unused"):
            await console.resolve(opened.token)
        assert watch.delta() == {"count": 1}

    async def test_last_seen_is_touched_at_most_once_a_minute(
        self, console: Console, clock: Clock
    ) -> None:
        opened = await console.open()
        clock.advance(30)
        await console.resolve(opened.token)
        assert (await console.row(opened.session.id)).last_seen_at == (opened.session.created_at)
        clock.advance(31)
        await console.resolve(opened.token)
        touched = (await console.row(opened.session.id)).last_seen_at
        assert touched - opened.session.created_at >= timedelta(seconds=61)

    async def test_absolute_end_however_busy(self, console: Console, clock: Clock) -> None:
        """A session used every 25 minutes never idles out, yet ends at its absolute end."""
        opened = await console.open()
        step = 1500
        while clock.offset + timedelta(seconds=step) < timedelta(seconds=MAX):
            clock.advance(step)
            await console.resolve(opened.token)
        clock.offset = timedelta(seconds=MAX)
        watch = _denied("expired_token")
        with pytest.raises(InvalidToken, match="reached its time limit"):
            await console.resolve(opened.token)
        assert watch.delta() == {"count": 1}


class TestCredentialChanges:
    async def test_password_change_ends_sessions(self, console: Console) -> None:
        """A password changed from a console session ends that session and every other;
        a new sign-in with the new password works."""
        first = await console.open()
        second = await console.open()
        async with console.unit() as session:
            await auth_service.change_own_password(
                session,
                console.security,
                CONTEXT,
                first.session.principal,
                current=DEFAULT_PASSWORD,
                new="a brand new password 2",
            )
        watch = _denied("stale_token")
        for opened in (first, second):
            with pytest.raises(InvalidToken, match="password changed"):
                await console.resolve(opened.token)
        assert watch.delta() == {"count": 2}
        fresh = await console.open(password="a brand new password 2")
        assert (await console.resolve(fresh.token)).id == fresh.session.id

    async def test_password_reset_ends_sessions(self, console: Console) -> None:
        opened = await console.open()
        async with console.unit() as session:
            await auth_service.reset_password(session, console.security, CONTEXT, "vera", None)
        with pytest.raises(InvalidToken):
            await console.resolve(opened.token)

    async def test_a_process_clock_ahead_does_not_end_new_sessions(
        self, console: Console, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A password reset by a process whose clock runs a minute ahead ends the sessions
        opened before it, not one opened just after it (the epoch decides, not times)."""
        before = await console.open()
        monkeypatch.setattr(users_module, "utcnow", lambda: utcnow() + timedelta(minutes=1))
        async with console.unit() as session:
            await auth_service.reset_password(
                session, console.security, CONTEXT, "vera", "a brand new password 2"
            )
        after = await console.open(password="a brand new password 2")
        assert (await console.resolve(after.token)).id == after.session.id
        with pytest.raises(InvalidToken):
            await console.resolve(before.token)

    async def test_disable_ends_sessions_for_good(self, console: Console) -> None:
        """While disabled the session is refused as disabled_user; once enabled again it
        stays ended (stale_token), as a JWT does."""
        opened = await console.open()
        async with console.unit() as session:
            await auth_service.set_user_disabled(session, CONTEXT, "vera", disabled=True)
        watch = _denied("disabled_user")
        with pytest.raises(InvalidToken, match="disabled"):
            await console.resolve(opened.token)
        assert watch.delta() == {"count": 1}
        async with console.unit() as session:
            await auth_service.set_user_disabled(session, CONTEXT, "vera", disabled=False)
        watch = _denied("stale_token")
        with pytest.raises(InvalidToken):
            await console.resolve(opened.token)
        assert watch.delta() == {"count": 1}

    async def test_session_may_change_credentials_but_a_stale_one_may_not(
        self, console: Console
    ) -> None:
        """A console session is a password login: it may create an API token. Its
        principal, kept past a password change, may not."""
        opened = await console.open()
        principal = opened.session.principal
        async with console.unit() as session:
            token, _ = await auth_service.create_api_token(
                session, CONTEXT, principal, name="ci", expires_at=None, scopes=None
            )
            assert token.name == "ci"
        async with console.unit() as session:
            await auth_service.reset_password(session, console.security, CONTEXT, "vera", None)
        with pytest.raises(InvalidToken, match="revoked meanwhile"):
            async with console.unit() as session:
                await auth_service.create_api_token(
                    session, CONTEXT, principal, name="ci-2", expires_at=None, scopes=None
                )


class TestLogout:
    async def test_logout_ends_the_session(self, console: Console) -> None:
        """Logout marks the row revoked and audits ``auth.logout``; the cookie is then
        refused (invalid_token). Logging out again, or with an unknown token, is no error
        and audits nothing more."""
        opened = await console.open()
        other = await console.open()
        await console.close(opened.token)
        assert (await console.row(opened.session.id)).revoked_at is not None
        watch = _denied("invalid_token")
        with pytest.raises(InvalidToken, match="unknown or ended"):
            await console.resolve(opened.token)
        assert watch.delta() == {"count": 1}
        assert (await console.resolve(other.token)).id == other.session.id
        async with console.unit() as session:
            for token in (opened.token, "never-issued", ""):
                await auth_service.close_console_session(session, token, CONTEXT)
        (logout,) = await console.audit("auth.logout")
        assert (logout.actor, logout.target, logout.result) == ("user:vera", "user:vera", "success")
        assert logout.details == {"via": "console", "console_session_id": str(opened.session.id)}

    async def test_unknown_and_empty_tokens_are_refused(self, console: Console) -> None:
        watch = _denied("invalid_token")
        for token in ("", "never-issued", "tgf_" + "x" * 43):
            with pytest.raises(InvalidToken):
                await console.resolve(token)
        assert watch.delta() == {"count": 3}


class TestSecretsKept:
    async def test_token_is_stored_hashed_only(
        self,
        console: Console,
        caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The row holds the token's SHA-256, never the token; no log line, no output and
        no audit record holds it either, through sign-in, use and logout."""
        with caplog.at_level(logging.DEBUG), capture_logs() as logs:
            opened = await console.open()
            await console.resolve(opened.token)
            async with console.unit() as session:
                await auth_service.close_console_session(session, opened.token, CONTEXT)
        token = opened.token
        row = await console.row(opened.session.id)
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        columns = [getattr(row, c.key) for c in ConsoleSessionRow.__table__.columns]
        assert not any(token in str(value) for value in columns)
        assert any(entry["event"] == "auth.console_session.opened" for entry in logs)
        assert token not in repr(logs)
        assert token not in caplog.text
        captured = capsys.readouterr()
        assert token not in captured.out
        assert token not in captured.err
        async with console.unit() as session:
            records = (await session.execute(select(AuditRecord))).scalars().all()
        assert {r.action for r in records} >= {"auth.login", "auth.logout"}
        for record in records:
            assert token not in repr((record.actor, record.target, record.details))


class TestCsrf:
    async def test_stable_per_session_and_different_between_sessions(
        self, console: Console
    ) -> None:
        first = await console.open()
        second = await console.open()
        token = first.session.csrf_token
        assert len(token) >= 43
        assert (await console.resolve(first.token)).csrf_token == token
        assert (await console.resolve(first.token)).csrf_token == token
        assert second.session.csrf_token != token
        assert first.token != token  # the CSRF token is not the cookie

    async def test_verify_csrf(self, console: Console) -> None:
        """Only the session's own token passes: not None, not empty, not another
        session's, not one altered by a character, not non-ASCII text."""
        mine = (await console.open()).session
        theirs = (await console.open(username="root")).session
        token = mine.csrf_token
        assert auth_service.verify_csrf(mine, token) is True
        altered = token[:-1] + ("A" if token[-1] != "A" else "B")
        for presented in (None, "", theirs.csrf_token, altered, token + "=", "é" * len(token)):
            assert auth_service.verify_csrf(mine, presented) is False


class TestOwnSessions:
    async def test_list_and_revoke_own(self, console: Console) -> None:
        """A user lists their open sessions (oldest first; not others', not ended ones)
        and revokes one: it is refused from then on, audited, and gone from the list."""
        first = await console.open()
        second = await console.open(user_agent=None)
        ended = await console.open()
        await console.open(username="root")
        user_id = first.session.principal.user_id
        assert user_id is not None
        await console.close(ended.token)
        async with console.unit() as session:
            listed = await auth_service.list_console_sessions(session, user_id)
        assert [s.id for s in listed] == [first.session.id, second.session.id]
        assert [(s.ip, s.user_agent) for s in listed] == [(IP, BROWSER), (IP, None)]
        async with console.unit() as session:
            await auth_service.revoke_console_session(session, user_id, second.session.id, CONTEXT)
            # Revoking it again changes nothing and is no error.
            await auth_service.revoke_console_session(session, user_id, second.session.id, CONTEXT)
        with pytest.raises(InvalidToken):
            await console.resolve(second.token)
        async with console.unit() as session:
            listed = await auth_service.list_console_sessions(session, user_id)
        assert [s.id for s in listed] == [first.session.id]
        (revoked,) = await console.audit("auth.console_session.revoke")
        assert (revoked.actor, revoked.target) == ("user:vera", "user:vera")
        assert revoked.details == {
            "via": "console",
            "console_session_id": str(second.session.id),
        }

    async def test_idle_sessions_left_out_given_security(
        self, console: Console, clock: Clock
    ) -> None:
        opened = await console.open()
        user_id = opened.session.principal.user_id
        assert user_id is not None
        clock.advance(IDLE + 1)
        async with console.unit() as session:
            everything = await auth_service.list_console_sessions(session, user_id)
            live = await auth_service.list_console_sessions(
                session, user_id, security=console.security
            )
        assert [s.id for s in everything] == [opened.session.id]
        assert live == []

    async def test_cannot_revoke_another_users_session(self, console: Console) -> None:
        """Another user's session id is not found (its existence is not told) and keeps
        working; so is an id nobody has."""
        mine = await console.open()
        theirs = await console.open(username="root")
        user_id = mine.session.principal.user_id
        assert user_id is not None
        for session_id in (theirs.session.id, uuid.uuid4()):
            with pytest.raises(ConsoleSessionNotFound, match="you have no console session"):
                async with console.unit() as session:
                    await auth_service.revoke_console_session(session, user_id, session_id, CONTEXT)
        assert (await console.resolve(theirs.token)).principal.username == "root"
        assert (await console.row(theirs.session.id)).revoked_at is None
        assert await console.audit("auth.console_session.revoke") == []


class TestPrune:
    async def test_prunes_sessions_ended_over_a_day_ago(self, console: Console) -> None:
        """A revoked session goes a day after its logout; open ones a day after their
        absolute end; nothing before."""
        revoked = await console.open()
        kept = await console.open()
        await console.close(revoked.token)
        start = utcnow()
        async with console.unit() as session:
            assert await auth_service.prune_console_sessions(session, start) == 0
            assert (
                await auth_service.prune_console_sessions(session, start + timedelta(hours=25)) == 1
            )
        assert await console.ids() == {kept.session.id}
        past_end = kept.session.expires_at + timedelta(days=1, minutes=1)
        async with console.unit() as session:
            assert await auth_service.prune_console_sessions(session, past_end) == 1
        assert await console.ids() == set()

    async def test_a_sign_in_prunes(self, console: Console) -> None:
        """A session logged out two days ago is deleted by the next sign-in; one logged out
        an hour ago stays."""
        old = await console.open()
        recent = await console.open()
        now = utcnow()
        async with console.unit() as session:
            for opened, ago in ((old, timedelta(days=2)), (recent, timedelta(hours=1))):
                await session.execute(
                    update(ConsoleSessionRow)
                    .where(ConsoleSessionRow.id == opened.session.id)
                    .values(revoked_at=now - ago)
                )
        fresh = await console.open()
        assert await console.ids() == {recent.session.id, fresh.session.id}


class TestSettings:
    def test_defaults(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path)
        assert settings.console_session_idle_seconds == IDLE
        assert settings.console_session_max_seconds == MAX
        assert settings.console_secure_cookies is False

    def test_idle_below_a_minute_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ValidationError, match="console_session_idle_seconds"):
            Settings(data_dir=tmp_path, console_session_idle_seconds=59)

    def test_max_below_idle_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ValidationError, match="must be at least TGFLEET_CONSOLE_SESSION_IDLE"):
            Settings(
                data_dir=tmp_path,
                console_session_idle_seconds=3600,
                console_session_max_seconds=1800,
            )
