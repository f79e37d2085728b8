"""``tgfleet user`` and ``tgfleet token`` against a real server: users are managed through
the API (and refused to a viewer, the permission named), tokens are created with a
usable secret printed once, listed without it and revoked; a revoked context token tells
to log in again."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from tests.cli.remote.conftest import ADMIN, VIEWER, Cli, DemoServer
from tests.cli.remote.test_completion import complete


def _user(demo_server: DemoServer, name: str) -> dict[str, Any]:
    with demo_server.api() as api:
        answer = api.get(f"/api/v1/users/{name}")
    answer.raise_for_status()
    found: dict[str, Any] = answer.json()
    return found


def _me(demo_server: DemoServer, token: str) -> httpx.Response:
    return httpx.get(
        f"{demo_server.url}/api/v1/auth/me",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _context(cli: Cli) -> dict[str, Any]:
    saved = json.loads(cli.config_file.read_text())
    context: dict[str, Any] = saved["contexts"][saved["current-context"]]
    return context


class TestUser:
    def test_create_set_role_disable_through_the_api(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """`user create` makes the user on the server with a generated password that signs
        in; `set-role` and `disable` change it there; `show` and `list` print the API's."""
        out = operator.ok("user", "create", "bob", "--role", "operator")
        found = re.fullmatch(
            r"created user bob with role operator\npassword \(shown once\): (\S+)\n", out
        )
        assert found, out
        with demo_server.api("bob", found[1]) as as_bob:
            assert as_bob.get("/api/v1/auth/me").json()["role"] == "operator"
        assert _user(demo_server, "bob")["role"] == "operator"

        assert operator.ok("user", "set-role", "bob", "viewer") == "user bob has role viewer\n"
        assert _user(demo_server, "bob")["role"] == "viewer"
        assert operator.ok("user", "disable", "bob") == "disabled user bob\n"
        assert _user(demo_server, "bob")["disabled"] is True
        (row,) = [line for line in operator.ok("user", "list").splitlines() if "bob" in line]
        assert row.split()[:3] == ["bob", "viewer", "disabled"]
        assert operator.json("user", "show", "bob") == _user(demo_server, "bob")
        with demo_server.api() as api:
            listed = api.get("/api/v1/users", params={"limit": 500}).json()["items"]
        assert operator.json("user", "list") == listed
        assert operator.ok("user", "enable", "bob") == "enabled user bob\n"
        assert _user(demo_server, "bob")["disabled"] is False

    def test_create_and_reset_with_a_password_from_stdin(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """--password-stdin sets that password and prints none."""
        first, second = "carol's first password", "carol's second password"
        out = operator.ok(
            "user", "create", "carol", "--role", "viewer", "--password-stdin", stdin=first
        )
        assert out == "created user carol with role viewer\n"
        with demo_server.api("carol", first) as as_carol:
            assert as_carol.get("/api/v1/auth/me").json()["username"] == "carol"
        out = operator.ok("user", "reset-password", "carol", "--password-stdin", stdin=second)
        assert out == "password of carol changed\n"
        with demo_server.api("carol", second) as as_carol:
            assert as_carol.get("/api/v1/auth/me").json()["username"] == "carol"

    def test_roles_are_the_api_roles(self, demo_server: DemoServer, operator: Cli) -> None:
        """`user roles -o json` is the API's roles with their permissions."""
        with demo_server.api() as api:
            roles = api.get("/api/v1/roles").json()
        assert operator.json("user", "roles") == roles
        table = operator.ok("user", "roles")
        (row,) = [line for line in table.splitlines() if line.startswith("viewer ")]
        assert "alert:read" in row

    def test_a_tab_offers_usernames_and_roles(self, demo_server: DemoServer, operator: Cli) -> None:
        """A user's name completes from the server's users, a role from its roles."""
        assert complete(operator, "tgfleet user show watc") == [VIEWER]
        with demo_server.api() as api:
            roles = [role["name"] for role in api.get("/api/v1/roles").json()]
        assert complete(operator, f"tgfleet user set-role {VIEWER} ") == roles
        assert complete(operator, "tgfleet user create dave --role op") == ["operator"]

    def test_a_viewer_is_refused_with_the_permission_named(
        self, demo_server: DemoServer, viewer: Cli
    ) -> None:
        """A viewer may not create users (user:admin) nor list them (user:read): exit 4,
        one line, and nothing made."""
        create = viewer.run("user", "create", "mallory", "--role", "admin")
        assert create.returncode == 4
        assert create.stderr == ("error: not permitted: this needs the permission user:admin\n")
        listing = viewer.run("user", "list")
        assert listing.returncode == 4
        assert "user:read" in listing.stderr
        with demo_server.api() as api:
            assert api.get("/api/v1/users/mallory").status_code == 404


class TestToken:
    def test_create_list_revoke(self, demo_server: DemoServer, operator: Cli) -> None:
        """`token create` prints only the secret on stdout (it works against the API, with
        the scope asked for); `token list` shows the token, never a secret; `token revoke`
        by name ends it."""
        done = operator.run(
            "token", "create", "ci", "--expires-days", "7", "--scope", "account:read",
            "--password-stdin", stdin=demo_server.admin_password,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        secret = done.stdout.strip()
        assert done.stdout == f"{secret}\n"
        assert "shown once" in done.stderr
        assert secret not in done.stderr
        me = _me(demo_server, secret).json()
        assert (me["username"], me["token_name"], me["permissions"]) == (
            ADMIN,
            "ci",
            ["account:read"],
        )

        listed = operator.json("token", "list")
        (ci,) = [t for t in listed if t["name"] == "ci"]
        assert ci["scopes"] == ["account:read"]
        assert "token" not in ci
        table = operator.ok("token", "list", "-o", "wide")
        assert secret not in table
        (row,) = [line for line in table.splitlines() if line.startswith("ci ")]
        assert ci["id"] in row

        out = operator.ok(
            "token", "revoke", "ci", "--password-stdin", stdin=demo_server.admin_password
        )
        assert out == f"token ci ({ci['id']}) revoked\n"
        assert _me(demo_server, secret).status_code == 401
        assert "ci" not in {t["name"] for t in operator.json("token", "list")}

    def test_revoke_by_id_prefix(self, demo_server: DemoServer, operator: Cli) -> None:
        """A token is revoked by a unique prefix of its id."""
        secret = operator.ok(
            "token", "create", "nightly", "--password-stdin", stdin=demo_server.admin_password
        ).strip()
        (nightly,) = [t for t in operator.json("token", "list") if t["name"] == "nightly"]
        operator.ok(
            "token", "revoke", nightly["id"][:8], "--password-stdin",
            stdin=demo_server.admin_password,
        )  # fmt: skip
        assert _me(demo_server, secret).status_code == 401

    def test_token_management_needs_the_password(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """The API lets no API token create tokens: without a terminal or --password-stdin
        the CLI says so (exit 2); a wrong password is exit 4; the context's own token is
        left to `tgfleet logout` (exit 2). Nothing is created or revoked."""
        before = operator.json("token", "list")
        asked = operator.run("token", "create", "nopass")
        assert asked.returncode == 2
        assert "password login" in asked.stderr
        assert "--password-stdin" in asked.stderr
        wrong = operator.run("token", "create", "nopass", "--password-stdin", stdin="not it")
        assert wrong.returncode == 4
        assert wrong.stderr == f"error: wrong password for admin at {demo_server.url}\n"
        own = _context(operator)["token_name"]
        itself = operator.run("token", "revoke", own)
        assert itself.returncode == 2
        assert "tgfleet logout" in itself.stderr
        assert operator.json("token", "list") == before

    def test_a_revoked_context_token_says_to_log_in_again(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """Once the context's token is revoked on the server, a remote command exits 4
        with one line telling to run `tgfleet login --server URL` again."""
        with demo_server.api() as api:
            gone = api.delete(f"/api/v1/auth/tokens/{_context(operator)['token_id']}")
        assert gone.status_code == 204
        done = operator.run("silence", "list")
        assert done.returncode == 4
        assert done.stderr.count("\n") == 1
        assert f"run `tgfleet login --server {demo_server.url}` again" in done.stderr
