"""Signing in and out of the console, the cookie's attributes, CSRF and the security
headers, through the real app."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser, csrf_of, sign_in
from tests.factories import DEFAULT_PASSWORD, create_user
from tgfleet.auth.service import Security
from tgfleet.console.web import LOGIN_CSRF_COOKIE, SESSION_COOKIE
from tgfleet.models import AuditRecord


def cookie_header(response: httpx.Response, name: str) -> str:
    for value in response.headers.get_list("set-cookie"):
        if value.startswith(f"{name}="):
            return value
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers}")


async def test_a_page_without_a_session_goes_to_sign_in_and_comes_back(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], security: Security
) -> None:
    first = await client.get("/?x=1", headers=HTML)
    assert first.status_code == 303
    assert first.headers["location"] == "/login?next=%2F%3Fx%3D1"

    await create_user(
        sessionmaker, security, username="otto", role="operator", password=DEFAULT_PASSWORD
    )
    form = await client.get(first.headers["location"], headers=HTML)
    assert 'name="next" value="/?x=1"' in form.text
    signed = await client.post(
        "/login",
        data={
            "username": "otto",
            "password": DEFAULT_PASSWORD,
            "csrf_token": csrf_of(form.text),
            "next": "/?x=1",
        },
        headers=HTML,
    )
    assert signed.status_code == 303
    assert signed.headers["location"] == "/?x=1"
    cookie = cookie_header(signed, SESSION_COOKIE).lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/" in cookie
    assert "secure" not in cookie  # plain http, TGFLEET_CONSOLE_SECURE_COOKIES unset
    page = await client.get("/", headers=HTML)
    assert page.status_code == 200
    assert "Fleet overview" in page.text
    assert "otto" in page.text


async def test_sign_in_never_redirects_to_another_site(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], security: Security
) -> None:
    await create_user(
        sessionmaker, security, username="otto", role="operator", password=DEFAULT_PASSWORD
    )
    for target in (
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
    ):
        form = await client.get("/login", headers=HTML)
        signed = await client.post(
            "/login",
            data={
                "username": "otto",
                "password": DEFAULT_PASSWORD,
                "csrf_token": csrf_of(form.text),
                "next": target,
            },
            headers=HTML,
        )
        assert signed.headers["location"] == "/", target


async def test_a_wrong_password_shows_the_form_again_and_is_audited(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], security: Security
) -> None:
    await create_user(
        sessionmaker, security, username="otto", role="operator", password=DEFAULT_PASSWORD
    )
    response = await sign_in(client, "otto", "not the password")
    assert response.status_code == 401
    assert 'role="alert"' in response.text
    assert "Wrong username or password." in response.text
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert "not the password" not in response.text
    async with sessionmaker() as session:
        record = (
            await session.execute(select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(1))
        ).scalar_one()
    assert (record.action, record.target, record.result) == ("auth.login", "user:otto", "failure")


async def test_the_sign_in_form_needs_its_csrf_cookie(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], security: Security
) -> None:
    await create_user(
        sessionmaker, security, username="otto", role="operator", password=DEFAULT_PASSWORD
    )
    form = await client.get("/login", headers=HTML)
    token = csrf_of(form.text)
    client.cookies.delete(LOGIN_CSRF_COOKIE)
    forged = await client.post(
        "/login",
        data={"username": "otto", "password": DEFAULT_PASSWORD, "csrf_token": token},
        headers=HTML,
    )
    assert forged.status_code == 403
    assert SESSION_COOKIE not in forged.headers.get("set-cookie", "")
    cross = await client.post(
        "/login",
        data={"username": "otto", "password": DEFAULT_PASSWORD, "csrf_token": token},
        headers={**HTML, "Origin": "https://evil.example"},
    )
    assert cross.status_code == 403


async def test_a_post_without_the_csrf_token_is_refused_and_audited(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await operator.http.post("/logout", data={}, headers=HTML)
    assert response.status_code == 403
    assert "did not come from this console" in response.text
    wrong = await operator.http.post("/logout", data={"csrf_token": "x" * 43}, headers=HTML)
    assert wrong.status_code == 403
    cross = await operator.http.post(
        "/logout",
        data={"csrf_token": operator.csrf},
        headers={**HTML, "Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    async with sessionmaker() as session:
        records = (
            (
                await session.execute(
                    select(AuditRecord)
                    .where(AuditRecord.action == "auth.denied")
                    .order_by(AuditRecord.seq)
                )
            )
            .scalars()
            .all()
        )
    assert [(r.actor, r.target, r.result, r.details["reason"]) for r in records] == [
        ("user:otto", "POST /logout", "denied", "csrf_token"),
        ("user:otto", "POST /logout", "denied", "csrf_token"),
        ("user:otto", "POST /logout", "denied", "cross_origin"),
    ]
    assert (await operator.http.get("/", headers=HTML)).status_code == 200  # still signed in


async def test_sign_out_ends_the_session(operator: Browser) -> None:
    response = await operator.post("/logout")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    operator.http.cookies.clear()  # even a copy of the old cookie is dead:
    again = await operator.http.get("/", headers=HTML)
    assert again.status_code == 303


async def test_a_copied_cookie_dies_with_sign_out(
    client: httpx.AsyncClient, operator: Browser
) -> None:
    token = operator.http.cookies[SESSION_COOKIE]
    assert (await operator.post("/logout")).status_code == 303
    client.cookies.set(SESSION_COOKIE, token)
    assert (await client.get("/", headers=HTML)).status_code == 303


async def test_every_console_response_carries_the_security_headers(
    client: httpx.AsyncClient, operator: Browser
) -> None:
    for response in (
        await client.get("/login", headers=HTML),
        await operator.http.get("/", headers=HTML),
        await operator.http.get("/no-such-page", headers=HTML),
    ):
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0]
        assert "unsafe-eval" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
    api = await client.get("/api/v1/accounts")
    assert api.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


async def test_a_missing_page_is_a_page_for_browsers_and_json_for_clients(
    client: httpx.AsyncClient, operator: Browser
) -> None:
    page = await operator.http.get("/accounts/nowhere/really", headers=HTML)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Back to the overview" in page.text
    api = await client.get("/no-such-page")
    assert api.status_code == 404
    assert api.json()["error"] == "not_found"


async def test_a_bare_not_found_says_what_to_do_instead_of_repeating_itself(
    operator: Browser,
) -> None:
    page = await operator.http.get("/no/such/page", headers=HTML)
    assert page.status_code == 404
    assert "<h1>Not found</h1>" in page.text
    assert "Not Found" not in page.text
    assert "Go back to the overview." in page.text


async def test_the_health_checks_page_is_a_console_page_under_the_api_document(
    operator: Browser,
) -> None:
    # /health is the API's JSON document; /health/checks is a console page: its CSP and its
    # language are the console's.
    page = await operator.http.get("/health/checks", headers={**HTML, "Accept-Language": "zh"})
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["content-language"] == "zh-Hans"
    document = await operator.http.get("/health")
    assert document.headers["content-security-policy"].startswith("default-src 'none'")
    assert "content-language" not in document.headers
