"""The domains' English texts the console shows (permission and built-in role descriptions,
the health document's fixed words) are listed in tgfleet.console.domain_texts exactly as the
domains write them, so the catalogue carries them and a Chinese page shows no English; a
domain that adds or changes one fails here instead."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import httpx
from markupsafe import escape
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser
from tests.factories import make_accounts
from tgfleet.account.schemas import ControlAction
from tgfleet.audit import service as audit_service
from tgfleet.auth.permissions import BUILTIN_DESCRIPTIONS, PERMISSION_DESCRIPTIONS, Permission
from tgfleet.console import domain_texts, i18n, views, views_account
from tgfleet.models.account import DesiredState
from tgfleet.models.vault_rotation import RotationState

ZH = {**HTML, "Accept-Language": "zh-CN,zh;q=0.9"}
HEALTH = Path(domain_texts.__file__).resolve().parents[1] / "health"


def zh(text: str) -> str:
    with i18n.using(i18n.BY_CODE["zh-Hans"]):
        return i18n.gettext(text)


def literal_outputs() -> set[str]:
    """Every health text the health package writes as a literal: a check's ``output="…"``
    and the process roles' descriptions (``_DESCRIPTIONS``)."""
    found: set[str] = set()
    for path in [HEALTH / "service.py", *sorted((HEALTH / "checks").glob("*.py"))]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "output":
                values = [node.value]
                if isinstance(node.value, ast.IfExp):
                    values = [node.value.body, node.value.orelse]
                found |= {
                    v.value
                    for v in values
                    if isinstance(v, ast.Constant) and isinstance(v.value, str)
                }
            if isinstance(node, ast.AnnAssign | ast.Assign) and isinstance(node.value, ast.Dict):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == "_DESCRIPTIONS" for t in targets):
                    found |= {
                        v.value
                        for v in node.value.values
                        if isinstance(v, ast.Constant) and isinstance(v.value, str)
                    }
    return found


class TestListedAsTheDomainsWriteThem:
    def test_every_permission_description_is_listed_word_for_word(self) -> None:
        """A new permission, or a changed description, must be listed (and so translated)."""
        assert set(domain_texts.PERMISSION_TEXTS) == set(Permission)
        for code in Permission:
            assert domain_texts.PERMISSION_TEXTS[code] == PERMISSION_DESCRIPTIONS[code], code

    def test_every_builtin_role_description_is_listed_word_for_word(self) -> None:
        """The built-in roles' descriptions as the domain (and migration 0001) hold them."""
        assert domain_texts.BUILTIN_ROLE_TEXTS == BUILTIN_DESCRIPTIONS

    def test_every_fixed_health_text_is_listed(self) -> None:
        """A check's literal output and a process role's description are all listed; the
        walk finds the ones known to exist (it reads the source, so it must not find none)."""
        literals = literal_outputs()
        assert {"not probed yet", "tgfleet API and console"} <= literals
        assert literals <= domain_texts.HEALTH_TEXTS, literals - domain_texts.HEALTH_TEXTS

    def test_every_listed_text_has_its_chinese(self) -> None:
        """The catalogue translates each (tools/catalogue.py check also fails otherwise)."""
        listed = [
            *domain_texts.PERMISSION_TEXTS.values(),
            *domain_texts.BUILTIN_ROLE_TEXTS.values(),
            *domain_texts.HEALTH_TEXTS,
            *domain_texts.HEALTH_UNITS.values(),
        ]
        untranslated = [text for text in listed if zh(text) == text]
        assert untranslated == []


class TestShownInTheReadersLanguage:
    async def test_the_roles_page_describes_permissions_and_builtin_roles_in_chinese(
        self, console_admin: Browser
    ) -> None:
        """/roles in zh-CN: each permission's and built-in role's description in Chinese, a
        custom role's description as its author wrote it."""
        created = await console_admin.post(
            "/roles",
            {
                "name": "night-shift",
                "description": "watches alerts at night",
                "permissions": ["alert:read"],
            },
        )
        assert created.status_code == 303, created.text
        page = await console_admin.http.get("/roles", headers=ZH)
        assert page.status_code == 200
        for code, english in PERMISSION_DESCRIPTIONS.items():
            assert zh(english) in page.text, code
            assert str(escape(english)) not in page.text, code
        for name, english in BUILTIN_DESCRIPTIONS.items():
            role = re.search(rf'data-role="{name}".*?<ul class="codes"', page.text, re.DOTALL)
            assert role, name
            assert zh(english) in role.group(0)
        custom = re.search(r'data-role="night-shift".*?<ul class="codes"', page.text, re.DOTALL)
        assert custom
        assert "watches alerts at night" in custom.group(0)

    async def test_the_same_page_in_english_keeps_the_domains_words(
        self, console_admin: Browser
    ) -> None:
        page = await console_admin.http.get("/roles", headers=HTML)
        assert str(escape(PERMISSION_DESCRIPTIONS[Permission.VAULT_ROTATE])) in page.text
        assert str(escape(BUILTIN_DESCRIPTIONS["operator"])) in page.text

    async def test_my_account_lists_token_scopes_in_chinese(self, operator: Browser) -> None:
        """/me's token scopes: the operator's own permissions, described in Chinese."""
        page = await operator.http.get("/me", headers=ZH)
        assert page.status_code == 200
        assert zh(PERMISSION_DESCRIPTIONS[Permission.ACCOUNT_CONTROL]) in page.text
        assert PERMISSION_DESCRIPTIONS[Permission.ACCOUNT_CONTROL] not in page.text

    async def test_the_health_page_translates_the_documents_fixed_words(
        self, operator: Browser, client: httpx.AsyncClient
    ) -> None:
        """The process's description and the checks' fixed outputs read in Chinese; the
        JSON document stays English for probes."""
        document = (await client.get("/health")).json()
        assert document["description"] in domain_texts.HEALTH_TEXTS
        page = await operator.http.get("/health/checks", headers=ZH)
        assert page.status_code == 200
        assert zh(document["description"]) in page.text
        assert document["description"] not in page.text
        outputs = {
            entry["output"]
            for entries in document["checks"].values()
            for entry in entries
            if entry.get("output") in domain_texts.HEALTH_TEXTS
        }
        for output in outputs:
            assert zh(output) in page.text, output
        assert "毫秒</td>" in page.text


class TestVaultStates:
    def test_every_rotation_state_and_key_state_has_its_chinese_word(self) -> None:
        """Each RotationState and each key state vault.rotation.status writes reads in
        Chinese; a state the console does not know is shown as its code."""
        with i18n.using(i18n.BY_CODE["zh-Hans"]):
            rotations = {state: domain_texts.rotation_state(state) for state in RotationState}
            keys = {
                state: domain_texts.vault_key_state(state)
                for state in ("active", "usable", "retired", "missing")
            }
            unknown = (domain_texts.vault_key_state("x"), domain_texts.rotation_state("y"))
        assert rotations[RotationState.DONE_WITH_FAILURES] == "已完成（有失败）"  # noqa: RUF001
        assert keys["active"] == "当前使用"
        assert all(word != state.replace("_", " ") for state, word in rotations.items())
        assert all(word != state for state, word in keys.items())
        assert unknown == ("x", "y")
        assert domain_texts.rotation_state(RotationState.DONE_WITH_FAILURES) == (
            "done with failures"
        )

    async def test_the_vault_page_names_the_key_state_in_chinese(
        self, console_admin: Browser
    ) -> None:
        page = await console_admin.http.get("/vault", headers=ZH)
        assert page.status_code == 200, page.text
        states = re.findall(r'data-testid="kek-state">([^<]+)<', page.text)
        assert "当前使用" in states
        assert "active" not in states


class TestAccountWords:
    def test_every_desired_state_and_control_action_has_its_chinese_word(self) -> None:
        with i18n.using(i18n.BY_CODE["zh-Hans"]):
            desired = {state: domain_texts.desired_state(state) for state in DesiredState}
            actions = {action: domain_texts.control_action(action) for action in ControlAction}
        assert desired == {DesiredState.RUNNING: "运行", DesiredState.STOPPED: "停止"}
        assert actions == {
            ControlAction.START: "启动",
            ControlAction.STOP: "停止",
            ControlAction.RESTART: "重启",
        }
        # English reads the domain's own words (the flash tests of the account page).
        assert [domain_texts.control_action(a) for a in ControlAction] == [
            a.value for a in ControlAction
        ]

    async def test_an_accounts_wanted_state_and_its_control_notice_read_chinese(
        self, operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """The Wanted column, the account's desired state and the notice after a start."""
        (account_id,) = await make_accounts(sessionmaker, ["zh-ctl"], running=False)
        started = await operator.http.post(
            f"/accounts/{account_id}/control",
            data={"csrf_token": operator.csrf, "action": "start"},
            headers=ZH,
        )
        assert started.status_code == 303
        page = await operator.http.get(started.headers["location"], headers=ZH)
        assert "启动：已提交；该账号的目标状态现为 运行。" in page.text  # noqa: RUF001
        assert '<dd data-testid="desired">运行</dd>' in page.text
        listing = await operator.http.get("/accounts?q=zh-ctl", headers=ZH)
        row = re.search(rf'<tr[^>]*data-account="{account_id}".*?</tr>', listing.text, re.DOTALL)
        assert row, listing.text
        assert "<td>运行</td>" in row.group(0)


class TestAuditResults:
    def test_every_audit_result_has_its_chinese_word(self) -> None:
        results = (audit_service.SUCCESS, audit_service.FAILURE, audit_service.DENIED)
        with i18n.using(i18n.BY_CODE["zh-Hans"]):
            words = [domain_texts.audit_result(result) for result in results]
        assert words == ["成功", "失败", "已拒绝"]
        assert [domain_texts.audit_result(result) for result in results] == list(results)

    async def test_the_audit_log_and_a_record_name_the_result_in_chinese(
        self, console_admin: Browser
    ) -> None:
        """ada's sign-in is in the log: its row's badge and its record page say 成功."""
        page = await console_admin.http.get("/audit?action=auth.login", headers=ZH)
        assert page.status_code == 200
        row = re.search(r'<tr data-seq="(\d+)">.*?</tr>', page.text, re.DOTALL)
        assert row, page.text
        assert ">成功</span>" in row.group(0)
        assert ">success<" not in page.text
        record = await console_admin.http.get(f"/audit/{row.group(1)}", headers=ZH)
        assert '<dd data-testid="record-result">成功</dd>' in record.text


class TestNotFoundPagesSayWhyInChinese:
    async def test_an_unknown_audit_record_and_playbook_are_explained_in_chinese(
        self, console_admin: Browser
    ) -> None:
        """The 404 page's message (the console's own sentence) follows the language."""
        record = await console_admin.http.get("/audit/999999", headers=ZH)
        assert record.status_code == 404
        assert "没有审计记录 999999：请检查链接，或在日志中查找该记录。" in record.text  # noqa: RUF001
        playbook = await console_admin.http.get("/playbooks/not-an-id", headers=ZH)
        assert playbook.status_code == 404
        assert "没有此 ID 的剧本" in playbook.text
        english = await console_admin.http.get("/audit/999999", headers=HTML)
        assert "No audit record 999999: check the link" in english.text


class TestOverviewChart:
    async def test_the_traffic_chart_speaks_the_readers_language(self, operator: Browser) -> None:
        """The chart's legend, axis words and its description for screen readers."""
        chinese = await operator.http.get("/", headers=ZH)
        assert chinese.status_code == 200
        assert '<span class="sent">发出的回复</span>' in chinese.text
        assert '<title id="traffic-desc">最近 60 分钟收到 0 条消息' in chinese.text
        assert ">-60 分钟</text>" in chinese.text
        english = await operator.http.get("/", headers=HTML)
        assert '<span class="sent">replies sent</span>' in english.text
        assert '<title id="traffic-desc">0 messages received and 0 replies sent' in english.text


class TestChoicesTheConsoleLists:
    async def test_the_sort_orders_and_timeline_kinds_read_chinese(
        self, operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """The accounts table's sort orders and an account's timeline filter: every option."""
        (account_id,) = await make_accounts(sessionmaker, ["zh-choices"])
        listing = await operator.http.get("/accounts", headers=ZH)
        assert '<option value="-since">最近变化在前</option>' in listing.text
        assert "Changed most recently" not in listing.text
        account = await operator.http.get(f"/accounts/{account_id}", headers=ZH)
        for english in views_account.EVENT_KINDS.values():
            assert zh(english) != english, english
            assert zh(english) in account.text, english
        for english in views.SORTS.values():
            assert zh(english) != english, english
