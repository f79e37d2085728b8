"""The fault registry: scoping by account, group and method, counts, clearing."""

from __future__ import annotations

import pytest

from tgfleet.exceptions import InvalidInput
from tgfleet.sandbox.faults import SEND_MESSAGE, FaultRegistry

A1, A2 = 1_000_001, 1_000_002
G1, G2 = 3_000_001, 3_000_002
GET_HISTORY = "messages.GetHistoryRequest"


class TestFaultRegistry:
    def test_no_rules_lets_every_call_run(self) -> None:
        """An empty registry fails nothing."""
        assert FaultRegistry().before_call(A1, SEND_MESSAGE, G1) is None

    def test_flood_wait_is_consumed_by_count(self) -> None:
        """FLOOD_WAIT_N fails exactly the next ``count`` matching calls, then disappears."""
        faults = FaultRegistry()
        faults.flood_wait(30, account=A1, method=SEND_MESSAGE, count=2)
        assert faults.before_call(A1, SEND_MESSAGE, G1) == (420, "FLOOD_WAIT_30")
        assert faults.before_call(A1, SEND_MESSAGE, G2) == (420, "FLOOD_WAIT_30")
        assert faults.before_call(A1, SEND_MESSAGE, G1) is None
        assert faults.rules() == []

    def test_scope_by_account_and_method(self) -> None:
        """A rule for one account and method leaves other accounts and methods alone, and
        a non-matching call does not consume it."""
        faults = FaultRegistry()
        rule = faults.flood_wait(5, account=A1, method=SEND_MESSAGE, count=1)
        assert faults.before_call(A2, SEND_MESSAGE, G1) is None
        assert faults.before_call(A1, GET_HISTORY, G1) is None
        assert faults.rules() == [rule]
        assert faults.before_call(A1, SEND_MESSAGE, None) == (420, "FLOOD_WAIT_5")

    def test_method_names_match_loosely(self) -> None:
        """``messages.sendMessage`` (the API's spelling) matches the TL class name."""
        faults = FaultRegistry()
        faults.flood_wait(7, account=A1, method="messages.sendMessage", count=1)
        assert faults.before_call(A1, SEND_MESSAGE, G1) == (420, "FLOOD_WAIT_7")

    def test_chat_write_forbidden_is_per_group_and_permanent(self) -> None:
        """CHAT_WRITE_FORBIDDEN fails sendMessage in its group only, on every call."""
        faults = FaultRegistry()
        faults.chat_write_forbidden(A1, G1)
        for _ in range(3):
            assert faults.before_call(A1, SEND_MESSAGE, G1) == (403, "CHAT_WRITE_FORBIDDEN")
        assert faults.before_call(A1, SEND_MESSAGE, G2) is None
        assert faults.before_call(A1, GET_HISTORY, G1) is None
        assert faults.before_call(A2, SEND_MESSAGE, G1) is None

    def test_slowmode_wait(self) -> None:
        """SLOWMODE_WAIT_N carries its seconds and applies to sendMessage in the group."""
        faults = FaultRegistry()
        faults.slowmode_wait(12, A1, G2)
        assert faults.before_call(A1, GET_HISTORY, G2) is None
        assert faults.before_call(A1, SEND_MESSAGE, G2) == (420, "SLOWMODE_WAIT_12")
        assert faults.before_call(A1, SEND_MESSAGE, G2) is None

    @pytest.mark.parametrize(
        ("kind", "expected"),
        [
            ("auth_key_unregistered", (401, "AUTH_KEY_UNREGISTERED")),
            ("session_revoked", (401, "SESSION_REVOKED")),
            ("user_deactivated_ban", (401, "USER_DEACTIVATED_BAN")),
            ("frozen", (420, "FROZEN_METHOD_INVALID")),
        ],
    )
    def test_account_faults_hold_from_now_on(self, kind: str, expected: tuple[int, str]) -> None:
        """Account-wide faults fail every method of that account until cleared."""
        faults = FaultRegistry()
        getattr(faults, kind)(A1)
        for method in (SEND_MESSAGE, GET_HISTORY, "users.GetUsersRequest"):
            assert faults.before_call(A1, method, None) == expected
        assert faults.before_call(A2, SEND_MESSAGE, None) is None
        assert faults.clear() == 1
        assert faults.before_call(A1, SEND_MESSAGE, None) is None

    def test_oldest_matching_rule_wins(self) -> None:
        """Rules are checked oldest first; when one is used up the next applies."""
        faults = FaultRegistry()
        faults.flood_wait(1, account=A1, count=1)
        faults.flood_wait(2, account=A1, count=1)
        assert faults.before_call(A1, SEND_MESSAGE, None) == (420, "FLOOD_WAIT_1")
        assert faults.before_call(A1, SEND_MESSAGE, None) == (420, "FLOOD_WAIT_2")
        assert faults.before_call(A1, SEND_MESSAGE, None) is None

    def test_clear_one_or_all(self) -> None:
        """``clear(id)`` removes that rule only (0 if unknown); ``clear()`` removes all."""
        faults = FaultRegistry()
        first = faults.session_revoked(A1)
        second = faults.chat_write_forbidden(None, G1)
        assert faults.clear(first.id) == 1
        assert faults.clear(first.id) == 0
        assert faults.rules() == [second]
        assert faults.before_call(A2, SEND_MESSAGE, G1) == (403, "CHAT_WRITE_FORBIDDEN")
        assert faults.clear() == 1
        assert faults.rules() == []

    def test_rejects_bad_counts_and_seconds(self) -> None:
        """A zero count or zero seconds is an input error, not a silent no-op rule."""
        faults = FaultRegistry()
        with pytest.raises(InvalidInput):
            faults.flood_wait(10, account=A1, count=0)
        with pytest.raises(InvalidInput):
            faults.flood_wait(0, account=A1)
        assert faults.rules() == []
