"""The admin console: sign in with an admin or superadmin API key; admins read,
superadmins change. Every change is a verb of
:class:`~creditmeter.meter.CreditMeter` called as the signed-in key, so the audit log
records who made it; every form carries the session's CSRF token."""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from creditmeter.api import auth
from creditmeter.api.dashboards import formatting, sessions
from creditmeter.api.dashboards.pages import PageRefused, SignInNeeded, render
from creditmeter.api.dashboards.portal import (
    CHART_DAYS,
    CHART_KEYS,
    Form,
    balance_state,
    form_fields,
    usage_between,
    usage_chart,
)
from creditmeter.api.dashboards.sessions import CSRF_FIELD, Session
from creditmeter.core.errors import CreditMeterError, NotFound
from creditmeter.core.keys import ApiKey, Role
from creditmeter.core.payments import Money, RefundShortfall
from creditmeter.core.types import Enforcement, GrantSource
from creditmeter.meter import CreditMeter

router = APIRouter(prefix="/admin", include_in_schema=False)

SESSION_LIFETIME: Final = timedelta(hours=8)
SIGN_IN_LIFETIME: Final = timedelta(minutes=30)
PAGE_SIZE: Final = 25
GRANT_SOURCES: Final = (
    GrantSource.ADMIN,
    GrantSource.PROMOTIONAL,
    GrantSource.BONUS,
    GrantSource.REFUND,
)
EDITABLE_SETTINGS: Final = (
    ("low_balance_threshold", "Low balance at or below (credits)", "int"),
    ("critical_balance_threshold", "Critical balance at or below (credits)", "int"),
    ("allowance_alerts", "Allowance alerts (percentages, comma-separated)", "percentages"),
    ("welcome_bonus", "Welcome bonus (credits)", "int"),
    ("minimum_purchase", "Minimum purchase (credits)", "int"),
    ("credits_per_usd", "Credits per US dollar", "decimal"),
    ("default_multiplier", "Default price multiplier", "decimal"),
    ("enforcement", "Enforcement", "choice"),
    ("default_hold_ttl_seconds", "Default hold lifetime (seconds)", "int"),
    ("max_hold_ttl_seconds", "Longest hold lifetime (seconds)", "int"),
    ("refund_shortfall", "Refunded credits already spent", "choice"),
    ("auto_recharge_max_failures", "Auto-recharge failures before it is turned off", "int"),
    ("auto_recharge_retry_seconds", "Wait after a failed auto-recharge (seconds)", "int"),
    ("grant_expiring_days", "Warn of an expiring grant (days before)", "int"),
    ("upgrade_url", "Upgrade page (URL)", "url"),
)
"""Every setting, with its label and its kind of field."""
SETTING_CHOICES: Final = {
    "enforcement": tuple(m.value for m in Enforcement),
    "refund_shortfall": tuple(m.value for m in RefundShortfall),
}


def _meter(request: Request) -> CreditMeter:
    meter: CreditMeter = request.app.state.meter
    return meter


@dataclass(frozen=True)
class Staff:
    """The signed-in key and its session."""

    key: ApiKey
    session: Session
    csrf: str

    @property
    def may_change(self) -> bool:
        return self.key.at_least(Role.SUPERADMIN)


def _key_of(request: Request, key_id: str) -> ApiKey | None:
    """The session's key, if it is still valid and of staff rank."""
    if key_id == auth.ADMIN_KEY.id:
        return auth.ADMIN_KEY if request.app.state.admin_key is not None else None
    try:
        key = _meter(request).api_key(key_id)
    except NotFound:
        return None
    if key.revoked_at is not None or not key.at_least(Role.ADMIN):
        return None
    return key


def staff(request: Request) -> Staff:
    """The signed-in staff member; to the sign-in page without a valid session. The key is
    looked up on every request: a revoked key's session ends at once."""
    meter = _meter(request)
    secret = meter.dashboard_secret()
    session = sessions.from_request(secret, "admin", request, meter.clock())
    key = None if session is None else _key_of(request, session.subject)
    if session is None or key is None:
        raise SignInNeeded()
    return Staff(key, session, sessions.csrf_token(secret, session))


def changing(request: Request, form: dict[str, str]) -> Staff:
    """The staff member posting a change: the CSRF token must be the session's, and the
    key a superadmin's."""
    who = staff(request)
    if not sessions.csrf_holds(
        _meter(request).dashboard_secret(), who.session, form.get(CSRF_FIELD)
    ):
        raise PageRefused(
            403,
            "This form has expired",
            "The form was missing its security token. Reload the page and try again.",
            home="/admin",
        )
    if not who.may_change:
        raise PageRefused(
            403,
            "Superadmins only",
            "Your key may read everything here; changes need a superadmin key.",
            home="/admin",
        )
    return who


def page(request: Request, who: Staff, template: str, **context: Any) -> HTMLResponse:
    status = context.pop("status", 200)
    return render(request, template, status=status, staff=who, csrf=who.csrf, **context)


def _failed(error: CreditMeterError, home: str) -> PageRefused:
    return PageRefused(400, "Nothing was changed", error.message, home=home)


# Signing in and out.


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, error: str = "") -> HTMLResponse:
    meter = _meter(request)
    secret = meter.dashboard_secret()
    value = sessions.seal(secret, "sign-in", secrets.token_hex(8), meter.clock() + SIGN_IN_LIFETIME)
    found = sessions.unseal(secret, "sign-in", value, meter.clock())
    assert found is not None
    response = render(
        request,
        "admin/sign_in.html",
        title="Sign in",
        csrf=sessions.csrf_token(secret, found),
        error=error,
        status=401 if error else 200,
    )
    sessions.set_cookie(request, response, "sign-in", value, SIGN_IN_LIFETIME)
    return response


@router.post("/sign-in", response_model=None)
async def sign_in(request: Request) -> Response:
    form = await form_fields(request)
    return await run_in_threadpool(_sign_in, request, form)


def _sign_in(request: Request, form: dict[str, str]) -> Response:
    meter = _meter(request)
    secret = meter.dashboard_secret()
    nonce = sessions.from_request(secret, "sign-in", request, meter.clock())
    if nonce is None or not sessions.csrf_holds(secret, nonce, form.get(CSRF_FIELD)):
        raise PageRefused(
            403,
            "This form has expired",
            "Open the sign-in page again and sign in from it.",
            home="/admin/sign-in",
        )
    given = form.get("key", "").strip()
    key: ApiKey | None = None
    admin_key: str | None = request.app.state.admin_key
    if given and admin_key is not None and auth.same_secret(given, admin_key):
        key = auth.ADMIN_KEY
    elif given:
        key = meter.authenticate(given)
    if key is None or not key.at_least(Role.ADMIN):
        return sign_in_page(request, error="That key is not an active admin or superadmin key.")
    value = sessions.seal(
        secret, "admin", key.id, meter.clock() + SESSION_LIFETIME, {"name": key.name}
    )
    response = RedirectResponse("/admin", status_code=303)
    sessions.set_cookie(request, response, "admin", value, SESSION_LIFETIME)
    sessions.clear_cookie(response, "sign-in")
    return response


@router.post("/sign-out", response_model=None)
def sign_out(request: Request, form: Form) -> Response:
    who = staff(request)
    if not sessions.csrf_holds(
        _meter(request).dashboard_secret(), who.session, form.get(CSRF_FIELD)
    ):
        raise PageRefused(403, "This form has expired", "Reload the page and try again.")
    response = RedirectResponse("/admin/sign-in", status_code=303)
    sessions.clear_cookie(response, "admin")
    return response


# Overview.


def _day_bounds(since: str, until: str, today: date) -> tuple[date, date]:
    try:
        first = date.fromisoformat(since) if since else today - timedelta(days=CHART_DAYS - 1)
        last = date.fromisoformat(until) if until else today
    except ValueError:
        raise PageRefused(
            400, "Not a date", "Dates are written 2026-12-31.", home="/admin"
        ) from None
    if last < first:
        first, last = last, first
    return first, last


def _instant(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


@router.get("", response_class=HTMLResponse)
def overview(
    request: Request, since: str = "", until: str = "", currency: str = ""
) -> HTMLResponse:
    """The admin overview of a date range (the last 30 days by default): the stats the
    JSON API serves at ``GET /v1/admin/stats``."""
    who = staff(request)
    meter = _meter(request)
    first, last = _day_bounds(since, until, meter.clock().date())
    try:
        stats = meter.stats(
            since=_instant(first),
            until=_instant(last + timedelta(days=1)),
            currency=currency or None,
        )
    except CreditMeterError as error:
        raise PageRefused(400, "Not a valid range", error.message, home="/admin") from None
    return page(
        request,
        who,
        "admin/overview.html",
        title="Overview",
        current="overview",
        first=first,
        last=last,
        currency=currency,
        stats=stats,
        chart=usage_between(meter, None, first, last, "feature"),
    )


# Accounts.


SORTS: Final = {
    "id": "Id",
    "name": "Name",
    "available": "Available credits",
    "created_at": "Created",
    "plan": "Plan",
    "status": "Status",
}


@router.get("/accounts", response_class=HTMLResponse)
def accounts_page(
    request: Request,
    q: str = "",
    plan: str = "",
    status: str = "",
    level: str = "",
    sort: str = "id",
    order: str = "asc",
    cursor: str = "",
) -> HTMLResponse:
    """Accounts found as ``GET /v1/admin/accounts`` finds them."""
    who = staff(request)
    meter = _meter(request)
    try:
        found = meter.search_accounts(
            query=q or None,
            plan=plan or None,
            status=status or None,
            level=level or None,
            sort=sort,
            descending=order == "desc",
            after=cursor or None,
            limit=PAGE_SIZE,
        )
    except CreditMeterError as error:
        raise PageRefused(
            400, "Not a valid search", error.message, home="/admin/accounts"
        ) from None
    query = {"q": q, "plan": plan, "status": status, "level": level, "sort": sort, "order": order}
    next_url = None
    if found.next_cursor:
        next_url = f"/admin/accounts?{urlencode(query | {'cursor': found.next_cursor})}"
    return page(
        request,
        who,
        "admin/accounts.html",
        title="Accounts",
        current="accounts",
        accounts=found.items,
        chosen=query,
        plans=meter.plans(),
        sorts=SORTS,
        next_url=next_url,
    )


def _account_context(meter: CreditMeter, account_id: str, by: str) -> dict[str, Any]:
    try:
        account = meter.account(account_id)
    except NotFound:
        raise PageRefused(
            404, "No such account", f"There is no account {account_id}.", home="/admin/accounts"
        ) from None
    balance = meter.balance(account_id)
    settings = meter.settings()
    return {
        "account": account,
        "balance": balance,
        "state": balance_state(settings, balance),
        "grants": meter.grants(account_id, include_spent=True)[:50],
        "purchases": meter.purchases(account_id, limit=20).data,
        "holds": meter.pending_holds_of(account_id, limit=20),
        "transactions": meter.transactions(account_id, limit=15).data,
        "audit": meter.audit_log(account=account_id, limit=15).data,
        "key_names": {k.id: k.name for k in meter.api_keys()},
        "chart": usage_chart(meter, account_id, meter.clock().date(), by),
        "by": by,
        "chart_keys": list(CHART_KEYS),
        "forecast": meter.forecast(account_id),
        "plans": meter.plans(),
        "sources": [s.value for s in GRANT_SOURCES],
    }


@router.get("/accounts/{account_id}", response_class=HTMLResponse)
def account_page(
    request: Request, account_id: str, done: str = "", by: str = "feature"
) -> HTMLResponse:
    who = staff(request)
    return page(
        request,
        who,
        "admin/account.html",
        title=account_id,
        current="accounts",
        done=done,
        **_account_context(_meter(request), account_id, by),
    )


def _account_url(account_id: str, done: str) -> str:
    return f"/admin/accounts/{quote(account_id, safe='')}?done={quote(done)}"


def _positive(text: str, what: str, home: str) -> int:
    try:
        value = int(text.replace(",", "").replace(" ", ""))
    except ValueError:
        raise PageRefused(
            400, "Nothing was changed", f"{what} must be a whole number.", home=home
        ) from None
    if value <= 0:
        raise PageRefused(400, "Nothing was changed", f"{what} must be more than 0.", home=home)
    return value


@router.get("/accounts/{account_id}/transactions.csv", response_class=Response)
def account_transactions_csv(request: Request, account_id: str) -> Response:
    """The account's whole ledger as CSV, as ``?format=csv`` of the API writes it."""
    staff(request)
    out = io.StringIO()
    try:
        _meter(request).export_transactions_csv(account_id, out)
    except NotFound:
        raise PageRefused(404, "No such account", f"There is no account {account_id}.") from None
    return _csv(out.getvalue(), f"{account_id}-transactions.csv")


def _csv(text: str, filename: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/accounts/{account_id}/grant", response_model=None)
def grant(request: Request, account_id: str, form: Form) -> Response:
    """Two steps: the form posts to a confirmation page, which posts again with
    ``confirm`` and an idempotency key, so a double submit grants once."""
    who = changing(request, form)
    meter = _meter(request)
    home = f"/admin/accounts/{quote(account_id, safe='')}"
    amount = _positive(form.get("amount", ""), "The amount", home)
    source = form.get("source", "admin")
    reason = form.get("reason", "").strip()
    if not reason:
        raise PageRefused(400, "Nothing was changed", "Say why the credits are granted.", home=home)
    if form.get("confirm") != "yes":
        return page(
            request,
            who,
            "admin/confirm_grant.html",
            title="Confirm the grant",
            current="accounts",
            account=meter.account(account_id),
            balance=meter.balance(account_id),
            amount=amount,
            source=source,
            reason=reason,
            operation=secrets.token_hex(12),
        )
    try:
        meter.grant(
            account_id,
            amount,
            source=source,
            reason=reason,
            idempotency_key=f"admin-console:{form.get('operation', '')}"
            if form.get("operation")
            else None,
            actor=auth.actor(who.key),
        )
    except CreditMeterError as error:
        raise _failed(error, home) from None
    return RedirectResponse(
        _account_url(account_id, f"Granted {amount:,} credits."), status_code=303
    )


@router.post("/accounts/{account_id}/grants/{grant_id}/void", response_model=None)
def void(request: Request, account_id: str, grant_id: str, form: Form) -> Response:
    """Asks for a confirmation first: a void takes credits away."""
    who = changing(request, form)
    meter = _meter(request)
    home = f"/admin/accounts/{quote(account_id, safe='')}"
    reason = form.get("reason", "").strip() or "voided in the admin console"
    if form.get("confirm") != "yes":
        grant = next((g for g in meter.grants(account_id) if g.id == grant_id), None)
        if grant is None:
            raise PageRefused(
                404, "No such grant", "It holds no credits, or is not this account's.", home=home
            )
        return confirm(
            request,
            who,
            title="Void this grant?",
            facts=[
                ("Account", account_id),
                ("Grant", f"{grant.source.value}, {grant.amount:,} credits"),
                ("Credits taken away", f"−{grant.remaining:,}"),
                ("Reason", reason),
            ],
            action=f"{home}/grants/{quote(grant_id, safe='')}/void",
            fields={"reason": reason},
            button=f"Void {grant.remaining:,} credits",
            cancel=home,
        )
    try:
        meter.void_grant(
            account_id,
            grant_id,
            reason=reason,
            idempotency_key=f"admin-console:void:{grant_id}",
            actor=auth.actor(who.key),
        )
    except CreditMeterError as error:
        raise _failed(error, home) from None
    return RedirectResponse(_account_url(account_id, "Grant voided."), status_code=303)


def confirm(
    request: Request,
    who: Staff,
    *,
    title: str,
    facts: list[tuple[str, str]],
    action: str,
    fields: dict[str, str],
    button: str,
    cancel: str,
) -> HTMLResponse:
    """The confirmation step of a change that moves credits or money: the same form again,
    with ``confirm=yes``."""
    return page(
        request,
        who,
        "admin/confirm.html",
        title=title,
        current="accounts",
        facts=facts,
        action=action,
        fields=fields,
        button=button,
        cancel=cancel,
    )


@router.post("/accounts/{account_id}/plan", response_model=None)
def change_plan(request: Request, account_id: str, form: Form) -> Response:
    who = changing(request, form)
    home = f"/admin/accounts/{quote(account_id, safe='')}"
    try:
        _meter(request).change_plan(
            account_id,
            form.get("plan", ""),
            immediately=form.get("immediately") == "on",
            actor=auth.actor(who.key),
        )
    except CreditMeterError as error:
        raise _failed(error, home) from None
    return RedirectResponse(_account_url(account_id, "Plan changed."), status_code=303)


@router.post("/accounts/{account_id}/status", response_model=None)
def change_status(request: Request, account_id: str, form: Form) -> Response:
    who = changing(request, form)
    home = f"/admin/accounts/{quote(account_id, safe='')}"
    status = form.get("status", "")
    try:
        _meter(request).update_account(account_id, status=status, actor=auth.actor(who.key))
    except CreditMeterError as error:
        raise _failed(error, home) from None
    return RedirectResponse(_account_url(account_id, f"Account {status}."), status_code=303)


@router.post("/accounts/{account_id}/overdraft", response_model=None)
def change_overdraft(request: Request, account_id: str, form: Form) -> Response:
    who = changing(request, form)
    home = f"/admin/accounts/{quote(account_id, safe='')}"
    try:
        limit = int(form.get("overdraft_limit", ""))
    except ValueError:
        raise PageRefused(
            400, "Nothing was changed", "The limit must be a whole number.", home=home
        ) from None
    try:
        _meter(request).update_account(account_id, overdraft_limit=limit, actor=auth.actor(who.key))
    except CreditMeterError as error:
        raise _failed(error, home) from None
    return RedirectResponse(_account_url(account_id, "Overdraft limit set."), status_code=303)


@router.post("/purchases/{purchase_id}/refund", response_model=None)
def refund_purchase(request: Request, purchase_id: str, form: Form) -> Response:
    """Asks for a confirmation first: a refund returns money and claws credits back."""
    who = changing(request, form)
    meter = _meter(request)
    try:
        purchase = meter.purchase(purchase_id)
    except CreditMeterError as error:
        raise _failed(error, "/admin/accounts") from None
    home = f"/admin/accounts/{quote(purchase.account_id, safe='')}"
    reason = form.get("reason", "").strip()
    if form.get("confirm") != "yes":
        left = Money(purchase.amount_paid - purchase.amount_refunded, purchase.price.currency)
        return confirm(
            request,
            who,
            title="Refund this purchase?",
            facts=[
                ("Account", purchase.account_id),
                ("Purchase", f"{purchase.package_id}, {purchase.credits:,} credits"),
                ("Refunded to the buyer", formatting.money(left)),
                ("Credits clawed back", "as far as they are unspent"),
            ],
            action=f"/admin/purchases/{quote(purchase_id, safe='')}/refund",
            fields={"reason": reason},
            button=f"Refund {formatting.money(left)}",
            cancel=home,
        )
    try:
        meter.refund_purchase(
            purchase_id,
            reason=reason or None,
            idempotency_key=f"admin-console:refund:{purchase_id}",
            actor=auth.actor(who.key),
        )
    except CreditMeterError as error:
        raise _failed(error, home) from None
    return RedirectResponse(
        _account_url(purchase.account_id, "Purchase refunded."), status_code=303
    )


# Catalogue, settings, keys, webhooks, audit log.


@router.get("/catalogue", response_class=HTMLResponse)
def catalogue(request: Request) -> HTMLResponse:
    who = staff(request)
    meter = _meter(request)
    return page(
        request,
        who,
        "admin/catalogue.html",
        title="Catalogue",
        current="catalogue",
        features=meter.features(),
        plans=meter.plans(),
        packages=meter.packages(include_inactive=True),
    )


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, done: str = "") -> HTMLResponse:
    who = staff(request)
    meter = _meter(request)
    return page(
        request,
        who,
        "admin/settings.html",
        title="Settings",
        current="settings",
        settings=meter.settings(),
        editable=EDITABLE_SETTINGS,
        choices=SETTING_CHOICES,
        history=meter.settings_history()[:50],
        done=done,
    )


@router.post("/settings", response_model=None)
def change_settings(request: Request, form: Form) -> Response:
    who = changing(request, form)
    meter = _meter(request)
    current = meter.settings()
    changes: dict[str, object] = {}
    for name, label, kind in EDITABLE_SETTINGS:
        if name not in form:
            continue
        value = _setting(form[name].strip(), kind, label)
        if value != _shown(getattr(current, name)):
            changes[name] = value
    if not changes:
        return RedirectResponse(
            "/admin/settings?done=" + quote("Nothing to change."), status_code=303
        )
    try:
        meter.change_settings(
            changes, changed_by=f"{who.key.id} ({who.key.name})", actor=auth.actor(who.key)
        )
    except CreditMeterError as error:
        raise _failed(error, "/admin/settings") from None
    return RedirectResponse("/admin/settings?done=" + quote("Settings saved."), status_code=303)


def _setting(text: str, kind: str, label: str) -> object:
    """A setting's value from its field (``None``: an empty URL, removed)."""
    if kind == "int":
        if not text.isdigit():
            raise _refused(f"{label} must be a whole number.")
        return int(text)
    if kind == "percentages":
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not all(p.isdigit() for p in parts):
            raise _refused(f"{label} must be whole numbers separated by commas.")
        return [int(p) for p in parts]
    if kind == "url":
        return text or None
    return text


def _shown(value: object) -> object:
    """A setting as its field gives it back, to tell a change from a value left as it was."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Decimal):
        return str(value)
    return value


def _refused(message: str) -> PageRefused:
    return PageRefused(400, "Nothing was changed", message, home="/admin/settings")


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request) -> HTMLResponse:
    who = staff(request)
    keys = _meter(request).api_keys() if who.may_change else []
    return page(
        request,
        who,
        "admin/keys.html",
        title="API keys",
        current="keys",
        keys=keys,
        roles=[r.value for r in Role],
        created=None,
    )


@router.post("/keys", response_class=HTMLResponse)
def create_key(request: Request, form: Form) -> HTMLResponse:
    who = changing(request, form)
    meter = _meter(request)
    try:
        key, secret = meter.create_api_key(
            form.get("role", ""),
            account_id=form.get("account") or None,
            name=form.get("name") or None,
            actor=auth.actor(who.key),
        )
    except CreditMeterError as error:
        raise _failed(error, "/admin/keys") from None
    return page(
        request,
        who,
        "admin/keys.html",
        title="API keys",
        current="keys",
        keys=meter.api_keys(),
        roles=[r.value for r in Role],
        created=(key, secret),
    )


@router.post("/keys/{key_id}/revoke", response_model=None)
def revoke_key(request: Request, key_id: str, form: Form) -> Response:
    who = changing(request, form)
    try:
        _meter(request).revoke_api_key(key_id, actor=auth.actor(who.key))
    except CreditMeterError as error:
        raise _failed(error, "/admin/keys") from None
    return RedirectResponse("/admin/keys", status_code=303)


@router.get("/webhooks", response_class=HTMLResponse)
def webhooks_page(request: Request) -> HTMLResponse:
    who = staff(request)
    meter = _meter(request)
    endpoints = meter.webhook_endpoints()
    deliveries = {e.id: meter.webhook_deliveries(e.id, limit=10) for e in endpoints}
    return page(
        request,
        who,
        "admin/webhooks.html",
        title="Webhooks",
        current="webhooks",
        endpoints=endpoints,
        deliveries=deliveries,
    )


@router.get("/audit.csv", response_class=Response)
def audit_csv(request: Request, account: str = "") -> Response:
    staff(request)
    out = io.StringIO()
    _meter(request).export_audit_log_csv(out, account=account or None)
    return _csv(out.getvalue(), "audit-log.csv")


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, account: str = "", cursor: str = "") -> HTMLResponse:
    who = staff(request)
    found = _meter(request).audit_log(
        account=account or None, limit=PAGE_SIZE, cursor=cursor or None
    )
    next_url = None
    if found.next_cursor:
        next_url = f"/admin/audit?{urlencode({'account': account, 'cursor': found.next_cursor})}"
    return page(
        request,
        who,
        "admin/audit.html",
        title="Audit log",
        current="audit",
        entries=found.data,
        key_names={k.id: k.name for k in _meter(request).api_keys()},
        account_filter=account,
        next_url=next_url,
    )
