"""Locking accounts with the grants a use case loads: one, or several together."""

from __future__ import annotations

from creditmeter import CreditMeter
from creditmeter.core.grants import Grant
from creditmeter.store import accounts


def by_id(grant: Grant) -> str:
    return grant.id


def test_accounts_locked_together_read_as_each_alone(meter: CreditMeter) -> None:
    meter.put_plan("pro", allowances={"*": 500})
    for name, plan in (("b-org", "pro"), ("a-org", None), ("c-org", "pro")):
        meter.create_account(name, plan=plan)
    meter.grant("a-org", 40, source="purchase")
    meter.grant("b-org", 7, source="admin")
    with meter.db.write() as conn:
        together = accounts.lock_many_with_grants(conn, ["c-org", "nobody", "a-org", "b-org"])
        alone = {a: accounts.lock_with_grants(conn, a) for a in ("a-org", "b-org", "c-org")}

    assert list(together) == ["a-org", "b-org", "c-org"]  # in the order of their ids
    for account_id, (row, grants) in together.items():
        found = alone[account_id]
        assert found is not None
        assert row == found[0]
        assert sorted(grants, key=by_id) == sorted(found[1], key=by_id)
    assert [len(grants) for _, grants in together.values()] == [1, 2, 1]
