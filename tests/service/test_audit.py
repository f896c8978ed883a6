"""The audit log written by the library's verbs: who acted, in the change's transaction."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from creditmeter import CreditMeter, InvalidRequest
from creditmeter.core import audit
from creditmeter.core.audit import Action, ActorKind
from creditmeter.service import settings as settings_service
from tests.conftest import Clock


def actions(
    meter: CreditMeter, only: tuple[str, ...] = ()
) -> list[tuple[str, str | None, str | None]]:
    """(action, key id or kind of actor, subject) of each entry, oldest first."""
    return [
        (e.action.value, e.actor.key_id or e.actor.kind.value, e.subject_id)
        for e in reversed(meter.audit_log(actions=only, limit=1000).data)
    ]


def test_the_library_is_the_actor_unless_another_is_named(meter: CreditMeter) -> None:
    meter.create_account("acme")
    meter.grant("acme", 10, actor=audit.CLI)
    key, _ = meter.create_api_key("superadmin", actor=audit.ADMIN_KEY_ENV)
    meter.update_account("acme", status="suspended", actor=audit.key(key.id))

    assert actions(meter) == [
        ("account.created", "library", "acme"),
        ("grant.created", "cli", meter.grants("acme")[0].id),
        ("api_key.created", "admin_key_env", key.id),
        ("account.status_changed", key.id, "acme"),
    ]


def test_an_actor_names_a_key_exactly_when_it_is_one() -> None:
    assert audit.key("key_1") == audit.Actor(ActorKind.API_KEY, "key_1")
    with pytest.raises(ValueError, match="names its key"):
        audit.Actor(ActorKind.API_KEY)
    with pytest.raises(ValueError, match="names its key"):
        audit.Actor(ActorKind.CLI, "key_1")


def test_a_change_refused_part_way_leaves_no_entry(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"calls": 10})
    meter.create_account("acme", overdraft_limit=100)
    meter.charge("acme", "chat")  # 10 credits of debt
    before = actions(meter)

    with pytest.raises(InvalidRequest, match="owes 10"):
        meter.update_account("acme", status="blocked", name="Acme", overdraft_limit=5)

    assert meter.account("acme").status.value == "active"
    assert actions(meter) == before


def test_a_replayed_key_and_a_second_revocation_record_nothing(meter: CreditMeter) -> None:
    meter.create_account("acme")
    first = meter.grant("acme", 5, idempotency_key="g-1")
    again = meter.grant("acme", 5, idempotency_key="g-1")
    key, _ = meter.create_api_key("service")
    meter.revoke_api_key(key.id)
    meter.revoke_api_key(key.id)
    meter.create_account("acme", name="ignored: the account exists")

    assert again == first
    assert actions(meter, ("grant.created", "api_key.revoked")) == [
        ("grant.created", "library", first.grant_id),
        ("api_key.revoked", "library", key.id),
    ]


def test_a_downgrade_is_recorded_as_taking_effect_next_period(meter: CreditMeter) -> None:
    meter.put_plan("pro", allowances={"*": 1_000})
    meter.put_plan("free", allowances={"*": 10})
    meter.create_account("acme", plan="pro")

    meter.change_plan("acme", "free")

    [entry] = meter.audit_log(actions=("account.plan_changed",)).data
    assert entry.details == {"from": "pro", "to": "free", "effective": "next_period"}


def test_pages_filters_and_csv(meter: CreditMeter, clock: Clock) -> None:
    for account in ("acme", "globex", "initech"):
        meter.create_account(account)
        clock.advance(minutes=1)
    meter.put_feature("chat", rates={"calls": 1})

    first = meter.audit_log(limit=2)
    second = meter.audit_log(limit=2, cursor=first.next_cursor)
    window = meter.audit_log(since=clock.now - timedelta(minutes=2), until=clock.now)
    out = io.StringIO()
    written = meter.export_audit_log_csv(out, account="globex")

    assert [e.subject_id for e in first.data + second.data] == [
        "chat",
        "initech",
        "globex",
        "acme",
    ]
    assert second.next_cursor is None
    assert [e.subject_id for e in window.data] == ["initech", "globex"]
    assert written == 1
    header, row = out.getvalue().splitlines()
    assert header == "id,created_at,actor_kind,actor_key_id,action,account,subject,details"
    assert ",library,,account.created,globex,globex," in row
    with pytest.raises(InvalidRequest, match="action must be one of"):
        meter.audit_log(actions=("grant.stolen",))
    with pytest.raises(InvalidRequest, match="invalid cursor"):
        meter.audit_log(cursor="nonsense")


def test_an_entry_commits_or_rolls_back_with_its_change(meter: CreditMeter, clock: Clock) -> None:
    def change_then_fail() -> None:
        with meter.db.write() as conn:
            settings_service.change(conn, clock.now, {"welcome_bonus": 5}, "ops", audit.CLI)
            raise RuntimeError("what came after the change failed")

    with pytest.raises(RuntimeError):
        change_then_fail()

    assert meter.settings().welcome_bonus == 0
    assert meter.audit_log().data == ()
    meter.change_settings({"welcome_bonus": 5}, changed_by="ops", actor=audit.CLI)
    [entry] = meter.audit_log(actions=(Action.SETTINGS_CHANGED,)).data
    assert (entry.subject_id, entry.details) == ("1", {"changes": {"welcome_bonus": 5}})
