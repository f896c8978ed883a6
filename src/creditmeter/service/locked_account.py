"""The account aggregate a unit of work locked: its totals, its grants and its ledger
writes, saved at the commit.

Every change of credits goes through :meth:`LockedAccount.post`, which makes one ledger
transaction whose postings sum to zero, applies the postings to the grants and moves the
account's running totals with them. The locked account keeps the grants it has read up
to date in memory and writes in bulk when it is saved: the holds it opened or finished,
the changes of each grant as one conditional update, the transactions, postings and usage
records as one insert each, however many operations the use case did (a batch of usage
is one save). On PostgreSQL the save is pipelined: one round trip for all its statements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy.engine import Connection

from creditmeter.core.grants import (
    Draw,
    Grant,
    consumption_order,
    drawable,
    merge_draws,
    order_key,
)
from creditmeter.core.ids import new_id
from creditmeter.core.records import Posting, Transaction
from creditmeter.core.types import (
    DEFAULT_PRIORITY,
    ISSUER,
    Credits,
    GrantId,
    GrantSource,
    PoolName,
    SystemAccount,
    TransactionType,
    wallet,
)
from creditmeter.store import accounts, database, grants, holds, ledger, usage
from creditmeter.store.accounts import AccountRow
from creditmeter.store.database import pipelined
from creditmeter.store.errors import ConcurrentUpdate
from creditmeter.store.grants import Change as GrantChange
from creditmeter.store.usage import NewUsage

T = TypeVar("T")


class PendingWrites:
    """What one account, or accounts locked together, write at the commit, one statement
    per table for the whole batch: new and finished holds, the ledger transactions and
    usage records (one insert each), the grants' changes and the accounts' running totals
    (of credits, and of what their grants hold free: one statement of each, sent in one
    round trip). The accounts stay locked until the
    end of the transaction, so writing their changes last changes nothing for anyone
    else."""

    def __init__(self) -> None:
        self.new_holds: list[holds.NewHold] = []
        self.finished_holds: list[holds.Finished] = []
        self.transactions: list[Transaction] = []
        self.usage: list[NewUsage] = []
        self.grant_changes: dict[GrantId, GrantChange] = {}
        self.free_moves: dict[grants.FreeKey, Credits] = {}
        self.totals: dict[str, AccountRow] = {}

    @property
    def copied(self) -> bool:
        """Whether the rows are many enough to copy (which a pipeline cannot do)."""
        return max(len(self.transactions), len(self.usage)) >= database.COPY_FROM

    def write(self, conn: Connection) -> None:
        for new in self.new_holds:
            holds.insert(conn, new)
        for finished in self.finished_holds:
            holds.finish(conn, finished)
        grants.change_many(conn, self.grant_changes)
        grants.move_free(conn, self.free_moves)
        accounts.save_totals(conn, list(self.totals.values()))
        ledger.insert_many(conn, self.transactions)
        usage.insert_many(conn, self.usage)
        self.new_holds, self.finished_holds, self.transactions, self.usage = [], [], [], []
        self.grant_changes, self.free_moves, self.totals = {}, {}, {}


class LockedAccount:
    def __init__(
        self,
        conn: Connection,
        row: AccountRow,
        now: datetime,
        memo: dict[tuple[str, str], object] | None = None,
        pending_writes: PendingWrites | None = None,
        *,
        loaded: Sequence[Grant] | None = None,
    ) -> None:
        """``pending_writes``: where to leave the account's new transactions and usage
        records for the caller to write (by default the account writes its own when it is
        saved);
        ``loaded``: the account's grants read with its row, if they were (else they are
        read when first needed)."""
        self.conn = conn
        self.row = row
        self.wallet = wallet(row.id)
        """The account's own ledger account, where its credits are."""
        self.now = now
        complete = loaded is not None and len(loaded) <= grants.LOAD_CAP
        self._known: dict[GrantId, Grant] = {g.id: g for g in loaded or ()} if complete else {}
        """The grants read or changed so far: all the live ones when ``_complete``."""
        self._complete = complete
        self._later: tuple[Credits, dict[GrantId, Credits]] | None = None
        """When not ``_complete``: what the grants that take effect later held free as
        stored when read, and how this use case changed the free credits of those of them it
        changed since (or had changed without writing yet)."""
        self._streams: dict[tuple[PoolName, int], list[tuple[int, Grant]]] = {}
        """The reads of ``grants.in_order`` since the account last wrote (as stored: its
        own changes are in ``_known``)."""
        self._ends_read: datetime | None = None
        """The time up to which the stored grants that ended with free credits are in
        ``_known`` (when not complete)."""
        self._allowances_read: datetime | None = None
        """The period whose allowance grants are all in ``_known`` (when not complete)."""
        self._unwritten: dict[GrantId, GrantChange] = {}
        """The grants' changes not yet in the database (a shared save leaves them to its
        pending writes)."""
        self._account_as_loaded = row.account
        self._due_as_loaded = row.due_at
        self._alerts_as_loaded = (row.balance_alert, row.allowance_alert)
        self._changes: dict[GrantId, GrantChange] = {}
        self._free_moves: dict[grants.FreeKey, Credits] = {}
        """What ``_changes`` move the running totals of free credits by."""
        self._shared = pending_writes is not None
        self._pending_writes = PendingWrites() if pending_writes is None else pending_writes
        self._memo = {} if memo is None else memo
        self.changes = 0
        """How many changes use cases made to the account in memory: a refusal that comes
        after one cannot be undone but by undoing the transaction."""

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def grants(self) -> list[Grant]:
        return list(self._loaded().values())

    def grant(self, grant_id: GrantId) -> Grant:
        """A grant of this account, also a spent one that :attr:`grants` leaves out."""
        known = self._known
        if grant_id not in known:
            for g in grants.get_many(self.conn, [grant_id]):
                known[g.id] = g
        return known[grant_id]

    def grant_in_period(
        self, source: GrantSource, pool: PoolName, period_start: datetime
    ) -> Grant | None:
        """The account's grant of ``source`` and ``pool`` for the period that starts at
        ``period_start`` (one at most), also a spent one."""
        for g in self._known.values():
            if (g.source, g.pool, g.period_start) == (source, pool, period_start):
                return g
        found = grants.in_period(self.conn, self.row.id, source, pool, period_start)
        return None if found is None else self.grant(found)

    def _loaded(self) -> dict[GrantId, Grant]:
        """Every live grant (and those read or changed so far): read in full the first
        time a use case asks for them all, which the hot paths do not."""
        if not self._complete:
            found = grants.for_account(self.conn, self.row.id, self.row.account.period_start)
            known = self._known
            self._known = {g.id: g for g in found}
            self._known.update(known)  # as this use case changed them
            self._complete = True
        return self._known

    @property
    def complete(self) -> bool:
        """Whether every live grant is in memory (an account with few)."""
        return self._complete

    def in_order(self, pool: PoolName) -> Iterator[Grant]:
        """The grants a charge of ``pool`` may draw now, in consumption order; on an
        account with many, read through the order indexes a few at a time, only as far as
        the caller iterates."""
        if self._complete:
            return iter(consumption_order(self._known.values(), pool, self.now))
        return self._in_order_stored(pool)

    def _in_order_stored(self, pool: PoolName) -> Iterator[Grant]:
        """Merge the streams of grants as stored (of ``pool`` and of every pool, those that
        expire and those that never do, each in its index's order, all in one query) with
        the grants known here (as this use case changed them). Grants up to the least of the
        streams' last keys are in their final order; the streams are read again, ``limit``
        growing eightfold, until the caller has enough."""
        key = order_key(pool)
        given: set[GrantId] = set()
        limit = 8
        while True:
            found = self._streams.get((pool, limit))
            if found is None:
                found = grants.in_order(self.conn, self.id, pool, self.now, limit)
                self._streams[pool, limit] = found
            candidates = dict(self._known)
            last: dict[int, Grant] = {}
            counts: dict[int, int] = {}
            for stream, g in found:
                candidates.setdefault(g.id, g)
                last[stream] = g
                counts[stream] = counts.get(stream, 0) + 1
            # A stream that filled its limit may have more beyond its last grant.
            full = [key(last[s]) for s, n in counts.items() if n == limit]
            horizon = min(full, default=None)
            for g in consumption_order(candidates.values(), pool, self.now):
                if g.id in given:
                    continue
                if horizon is not None and key(g) > horizon:
                    break
                given.add(g.id)
                yield self._known.setdefault(g.id, g)
            if horizon is None:
                return
            limit *= 8

    def free_up_to(self, pool: PoolName, credits: Credits) -> Credits:
        """What the grants a charge of ``pool`` may draw hold free, counted in consumption
        order until it reaches ``credits`` (exact when less)."""
        free = 0
        for g in self.in_order(pool):
            free += g.free
            if free >= credits:
                break
        return free

    def period_allowances(self) -> list[Grant]:
        """The allowance grants of the account's current period, also spent ones."""
        start = self.row.account.period_start
        if not self._complete and self._allowances_read != start:
            for g in grants.allowances_of_period(self.conn, self.id, start):
                self._known.setdefault(g.id, g)
            self._allowances_read = start
        return [
            g
            for g in self._known.values()
            if g.source is GrantSource.ALLOWANCE and g.period_start == start
        ]

    def ended_with_free(self, until: datetime) -> list[Grant]:
        """The grants that ended by ``until`` and still hold free credits. A stored grant
        with credits left ends no sooner than the account's due time (every change that
        gives a grant credits lowers it to the grant's end): of those stored, only the ones
        that end from that time to ``until`` are read, besides the grants this use case
        has changed."""
        since = self._due_as_loaded
        read = self._ends_read
        if not self._complete and until >= since and (read is None or until > read):
            for g in grants.ending(self.conn, self.id, since, until):
                self._known.setdefault(g.id, g)
            self._ends_read = until
        return [
            g
            for g in self._known.values()
            if g.expires_at is not None and g.expires_at <= until and g.free > 0
        ]

    def free_by_pool(self) -> dict[tuple[PoolName, GrantSource], Credits]:
        """What the grants active now hold free, by pool and source: on an account with
        many grants that this use case has not changed, read from the running totals the
        database keeps of them."""
        if self._complete or self._unwritten:
            found: dict[tuple[PoolName, GrantSource], Credits] = {}
            for g in drawable(self._loaded().values(), None, self.now):
                found[g.pool, g.source] = found.get((g.pool, g.source), 0) + g.free
            return found
        return grants.free_by_pool(self.conn, self.id, self.now)

    @property
    def available(self) -> Credits:
        """What the account can spend now: its balance less holds and less grants that
        take effect later (the ledger counts those from their issuance)."""
        if self._complete:
            later = sum(g.free for g in self._known.values() if g.effective_at > self.now)
        else:
            if self._later is None:
                stored = grants.free_later(self.conn, self.id, self.now)
                pending = {
                    grant_id: change.remaining - change.held
                    for grant_id, change in self._unwritten.items()
                    if self.grant(grant_id).effective_at > self.now
                }
                self._later = (stored, pending)
            stored, changed = self._later
            later = stored + sum(changed.values())
        return self.row.available - later

    def lower_due(self, at: datetime | None) -> None:
        if at is not None and at < self.row.due_at:
            self.row.due_at = at

    def save(self) -> None:
        """Write everything this use case changed, pipelined; an account that shares its
        pending writes leaves its grants' changes, its running totals, holds, transactions
        and usage records to them."""
        changed = self.row.account != self._account_as_loaded
        alerts = (self.row.balance_alert, self.row.allowance_alert)
        if alerts != self._alerts_as_loaded:
            accounts.save_alerts(self.conn, self.row)
            self._alerts_as_loaded = alerts
        if self._shared and not changed:
            pending = self._pending_writes.grant_changes
            for grant_id, change in self._changes.items():
                pending[grant_id] = pending.get(grant_id, GrantChange()) + change
            moves = self._pending_writes.free_moves
            for key, free in self._free_moves.items():
                moves[key] = moves.get(key, 0) + free
            self._pending_writes.totals[self.id] = self.row
        else:
            with pipelined(self.conn):
                grants.change_many(self.conn, self._changes)
                grants.move_free(self.conn, self._free_moves)
                accounts.save(self.conn, self.row, fields_changed=changed)
                if not self._shared:
                    self._pending_writes.write(self.conn)
            self._unwritten, self._streams = {}, {}
        self._changes, self._free_moves = {}, {}
        self._account_as_loaded = self.row.account

    def memo(self, key: tuple[str, str], load: Callable[[], T]) -> T:
        """``load()``, once per use case (prices and plans do not change under it), or
        once per version of the catalog when the account is given a shared ``memo``."""
        if key not in self._memo:
            self._memo[key] = load()
        return cast(T, self._memo[key])

    def record_usage(self, new: NewUsage) -> None:
        self.changes += 1
        self._pending_writes.usage.append(new)

    def record_hold(self, new: holds.NewHold) -> None:
        self.changes += 1
        self._pending_writes.new_holds.append(new)

    def finish_hold(self, finished: holds.Finished) -> None:
        """Move a pending hold to its final status when the account is saved (a hold that
        another writer finished first makes the save fail)."""
        self.changes += 1
        self._pending_writes.finished_holds.append(finished)

    def next_grant_expiry(self) -> datetime | None:
        """When the first grant that still holds credits expires: of those stored, the
        first that ends from the account's due time as read and that this use case has not
        changed (it knows those as they are now)."""
        ends = [g.expires_at for g in self._known.values() if g.remaining > 0 and g.expires_at]
        if not self._complete:
            limit = len(self._known) + 1
            stored = grants.next_ends(self.conn, self.id, self._due_as_loaded, limit)
            ends += [end for grant_id, end in stored if grant_id not in self._known][:1]
        return min(ends, default=None)

    def _change(self, grant_id: GrantId, change: GrantChange) -> None:
        self._changes[grant_id] = self._changes.get(grant_id, GrantChange()) + change
        g = self.grant(grant_id)
        key = (self.id, g.pool, g.source)
        self._free_moves[key] = self._free_moves.get(key, 0) + change.remaining - change.held
        if self._complete:
            return
        self._unwritten[grant_id] = self._unwritten.get(grant_id, GrantChange()) + change
        if self._later is not None and self.grant(grant_id).effective_at > self.now:
            changed = self._later[1]
            changed[grant_id] = changed.get(grant_id, 0) + change.remaining - change.held

    # Reservations (holds): no ledger entry, only `held` on grants and the account.

    def reserve(self, draws: Iterable[Draw], sign: int = 1) -> Credits:
        total = 0
        for d in draws:
            g = self.grant(d.grant_id)
            if not 0 <= g.held + sign * d.credits <= g.remaining:
                raise ConcurrentUpdate(f"grant {g.id} cannot hold {sign * d.credits} more")
            self._change(d.grant_id, GrantChange(held=sign * d.credits))
            self._put(g.moved(held=sign * d.credits))
            total += d.credits
        self.row.held += sign * total
        return total

    def unreserve(self, draws: Iterable[Draw]) -> Credits:
        return self.reserve(draws, sign=-1)

    # New grants.

    def open_grant(
        self,
        source: GrantSource,
        *,
        pool: PoolName,
        priority: int | None = None,
        effective_at: datetime | None = None,
        expires_at: datetime | None = None,
        period_start: datetime | None = None,
        reference: str | None = None,
    ) -> Grant:
        """An empty grant; credits come into it by a posting."""
        g = Grant(
            id=new_id("grt"),
            account_id=self.row.id,
            source=source,
            pool=pool,
            priority=DEFAULT_PRIORITY[source] if priority is None else priority,
            amount=0,
            remaining=0,
            held=0,
            effective_at=effective_at or self.now,
            expires_at=expires_at,
            created_at=self.now,
            period_start=period_start,
            reference=reference,
        )
        grants.insert(self.conn, g)
        self._put(g)
        self.lower_due(expires_at)
        return g

    # Postings.

    def issue(
        self,
        issued: Mapping[GrantId, Credits],
        source: GrantSource,
        kind: TransactionType,
        description: str,
        **extra: Any,
    ) -> Transaction:
        """Credits from the source's issuance account into grants, growing their amount."""
        legs = [Posting(ISSUER[source].value, -sum(issued.values()))]
        legs += [Posting(self.wallet, n, g) for g, n in issued.items()]
        changes = {g: GrantChange(remaining=n, amount=n) for g, n in issued.items()}
        return self.post(kind, legs, changes, description, **extra)

    def consume(
        self, draws: Sequence[Draw], debited: Credits, description: str, **extra: Any
    ) -> Transaction:
        """Credits drawn from grants (and taken on as debt) into consumption."""
        draws = merge_draws(draws)
        legs = [Posting(self.wallet, -d.credits, d.grant_id) for d in draws]
        if debited:
            legs.append(Posting(self.wallet, -debited))
        legs.append(
            Posting(SystemAccount.CONSUMPTION.value, sum(d.credits for d in draws) + debited)
        )
        changes = {d.grant_id: GrantChange(remaining=-d.credits) for d in draws}
        return self.post(TransactionType.USAGE, legs, changes, description, **extra)

    def void(self, grant_id: GrantId, description: str, **extra: Any) -> Transaction:
        """The credits left in a grant out to the void account; the grant is marked voided
        and is never drawn from or refilled again. Its credits must not be held."""
        g = self.grant(grant_id)
        grants.mark_voided(self.conn, grant_id, self.now)
        self._put(replace(g, voided_at=self.now))
        legs = [
            Posting(self.wallet, -g.remaining, grant_id),
            Posting(SystemAccount.VOID.value, g.remaining),
        ]
        changes = {grant_id: GrantChange(remaining=-g.remaining)}
        return self.post(TransactionType.VOID, legs, changes, description, **extra)

    def post(
        self,
        kind: TransactionType,
        legs: Sequence[Posting],
        changes: Mapping[GrantId, GrantChange],
        description: str,
        *,
        usage_id: str | None = None,
        hold_id: str | None = None,
        purchase_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> Transaction:
        """Write one balanced ledger transaction and apply it to grants and totals."""
        legs = [leg for leg in legs if leg.amount != 0]
        if sum(leg.amount for leg in legs) != 0:
            raise AssertionError(f"unbalanced postings: {legs}")
        wallet_delta = debt_delta = 0
        for leg in legs:
            if leg.ledger_account == self.wallet:
                wallet_delta += leg.amount
                if leg.grant_id is None:
                    debt_delta -= leg.amount
        for grant_id, change in changes.items():
            g = self.grant(grant_id)
            g = g.moved(remaining=change.remaining, amount=change.amount)
            if not 0 <= g.held <= g.remaining <= g.amount:
                raise ConcurrentUpdate(f"grant {grant_id} cannot change by {change}")
            self._change(grant_id, change)
            self._put(g)
            if change.remaining > 0:  # due when it expires (a refund refills a spent one)
                self.lower_due(g.expires_at)
        before = self.row.available
        self.row.balance += wallet_delta
        self.row.debt += debt_delta
        txn = Transaction(
            id=new_id("txn"),
            account_id=self.row.id,
            type=kind,
            amount=wallet_delta,
            balance_before=before,
            balance_after=self.row.available,
            description=description,
            created_at=created_at or self.now,
            postings=tuple(
                Posting(
                    leg.ledger_account, leg.amount, leg.grant_id, self.grant(leg.grant_id).source
                )
                if leg.grant_id is not None
                else leg
                for leg in legs
            ),
            usage_id=usage_id,
            hold_id=hold_id,
            metadata=dict(metadata or {}),
            purchase_id=purchase_id,
        )
        self.changes += 1
        self._pending_writes.transactions.append(txn)
        return txn

    def _put(self, g: Grant) -> None:
        self.changes += 1
        self._known[g.id] = g
