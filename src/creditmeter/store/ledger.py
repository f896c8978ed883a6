"""SQL for the append-only ledger: transactions and their postings."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from creditmeter.core.records import Posting, Transaction
from creditmeter.core.types import AccountId, GrantSource, TransactionId, TransactionType
from creditmeter.store import _statements
from creditmeter.store.tables import grants, ledger_transactions, postings

_INSERT_TRANSACTION = _statements.Statement(ledger_transactions.insert())
_INSERT_POSTING = _statements.Statement(postings.insert())


def insert_many(conn: Connection, txns: Sequence[Transaction]) -> None:
    """Append transactions and their postings, in two statements however many there are."""
    if not txns:
        return
    _statements.run_many(
        conn,
        _INSERT_TRANSACTION,
        [
            {
                "id": t.id,
                "account_id": t.account_id,
                "type": t.type.value,
                "amount": t.amount,
                "balance_before": t.balance_before,
                "balance_after": t.balance_after,
                "description": t.description,
                "usage_id": t.usage_id,
                "hold_id": t.hold_id,
                "purchase_id": t.purchase_id,
                "metadata": dict(t.metadata),
                "created_at": t.created_at,
            }
            for t in txns
        ],
    )
    legs = [
        {
            "transaction_id": t.id,
            "ledger_account": p.ledger_account,
            "grant_id": p.grant_id,
            "amount": p.amount,
        }
        for t in txns
        for p in t.postings
    ]
    _statements.run_many(conn, _INSERT_POSTING, legs)


def _transaction(row: RowMapping, legs: Sequence[Posting]) -> Transaction:
    return Transaction(
        id=row["id"],
        account_id=row["account_id"],
        type=TransactionType(row["type"]),
        amount=row["amount"],
        balance_before=row["balance_before"],
        balance_after=row["balance_after"],
        description=row["description"],
        created_at=row["created_at"],
        postings=tuple(legs),
        usage_id=row["usage_id"],
        hold_id=row["hold_id"],
        purchase_id=row["purchase_id"],
        metadata=row["metadata"],
    )


def page(
    conn: Connection,
    account_id: AccountId,
    *,
    types: Sequence[TransactionType] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    before: tuple[datetime, TransactionId] | None = None,
    limit: int,
) -> list[Transaction]:
    """Transactions newest first, strictly older than the ``before`` cursor position."""
    t = ledger_transactions
    query = sa.select(t).where(t.c.account_id == account_id)
    if types:
        query = query.where(t.c.type.in_([x.value for x in types]))
    if since is not None:
        query = query.where(t.c.created_at >= since)
    if until is not None:
        query = query.where(t.c.created_at < until)
    if before is not None:
        at, txn_id = before
        query = query.where(
            sa.or_(t.c.created_at < at, sa.and_(t.c.created_at == at, t.c.id < txn_id))
        )
    query = query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit)
    rows = list(conn.execute(query).mappings())
    legs = postings_of(conn, [r["id"] for r in rows])
    return [_transaction(r, legs.get(r["id"], ())) for r in rows]


def get(conn: Connection, txn_id: TransactionId) -> Transaction | None:
    row = (
        conn.execute(sa.select(ledger_transactions).where(ledger_transactions.c.id == txn_id))
        .mappings()
        .first()
    )
    if row is None:
        return None
    return _transaction(row, postings_of(conn, [txn_id]).get(txn_id, ()))


def postings_of(
    conn: Connection, txn_ids: Sequence[TransactionId]
) -> dict[TransactionId, list[Posting]]:
    if not txn_ids:
        return {}
    query = (
        sa.select(
            postings.c.transaction_id,
            postings.c.ledger_account,
            postings.c.amount,
            postings.c.grant_id,
            grants.c.source,
        )
        .select_from(postings.outerjoin(grants, grants.c.id == postings.c.grant_id))
        .where(postings.c.transaction_id.in_(list(txn_ids)))
        .order_by(postings.c.id)
    )
    result: dict[TransactionId, list[Posting]] = defaultdict(list)
    for r in conn.execute(query):
        source = None if r.source is None else GrantSource(r.source)
        result[r.transaction_id].append(Posting(r.ledger_account, r.amount, r.grant_id, source))
    return result


def usage_postings(conn: Connection, usage_id: str) -> list[Posting]:
    """The wallet legs of the usage transaction that charged ``usage_id``."""
    t = ledger_transactions
    query = (
        sa.select(postings.c.ledger_account, postings.c.amount, postings.c.grant_id)
        .select_from(postings.join(t, t.c.id == postings.c.transaction_id))
        .where(t.c.usage_id == usage_id, t.c.type == TransactionType.USAGE.value)
        .order_by(postings.c.id)
    )
    return [Posting(r.ledger_account, r.amount, r.grant_id) for r in conn.execute(query)]
