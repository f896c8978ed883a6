"""The customer portal: one account's balance, allowance, packs, purchases,
auto-recharge, transactions and usage, opened from a one-time portal link.

Every figure comes from the same verbs of :class:`~creditmeter.meter.CreditMeter` the JSON
API serves (``balance``, ``transactions``, ``purchases``, ``auto_recharge``,
``usage_summary``); every change goes through them too.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from creditmeter.api.dashboards import charts, sessions
from creditmeter.api.dashboards.pages import PageRefused, base_url, branding, render
from creditmeter.api.dashboards.sessions import CSRF_FIELD, Session
from creditmeter.core.errors import CreditMeterError
from creditmeter.core.payments import THREE_DECIMAL, ZERO_DECIMAL, AutoRecharge, Package
from creditmeter.core.portal import SESSION_LIFETIME
from creditmeter.core.records import Balance
from creditmeter.core.settings import Settings
from creditmeter.core.stats import level_of
from creditmeter.core.types import TransactionType
from creditmeter.meter import CreditMeter
from creditmeter.payments.dev import WORKING_CARD, DevProvider
from creditmeter.payments.off import PaymentsOff

router = APIRouter(prefix="/portal", include_in_schema=False)

CHART_DAYS = 30
PAGE_SIZE = 25
ENDED = (
    "Open the portal again from the app you came from: each portal link works once, "
    "for a few minutes, and a session lasts an hour."
)


def _meter(request: Request) -> CreditMeter:
    meter: CreditMeter = request.app.state.meter
    return meter


async def form_fields(request: Request) -> dict[str, str]:
    """A posted form's fields (``application/x-www-form-urlencoded``)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = await request.body()
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


Form = Annotated[dict[str, str], Depends(form_fields)]


def portal_session(request: Request) -> Session:
    meter = _meter(request)
    found = sessions.from_request(meter.dashboard_secret(), "portal", request, meter.clock())
    if found is None:
        raise PageRefused(401, "Your portal session has ended", ENDED)
    return found


def checked(request: Request, form: dict[str, str]) -> Session:
    """The session of a posted form, whose CSRF token must be the session's."""
    session = portal_session(request)
    if not sessions.csrf_holds(_meter(request).dashboard_secret(), session, form.get(CSRF_FIELD)):
        raise PageRefused(
            403, "This form has expired", "Go back, reload the page and try again.", home="/portal"
        )
    return session


@router.get("/session/{token}", response_model=None)
def open_link(request: Request, token: str, embed: str = "") -> Response:
    """A portal link: used once, it starts a session and leads to the portal (or, with
    ``?embed=balance``, to the embeddable balance card)."""
    meter = _meter(request)
    opened = meter.open_portal_session(token)
    if opened is None:
        raise PageRefused(403, "This link has expired or was already used", ENDED)
    now = meter.clock()
    extra = {"return_url": opened.return_url} if opened.return_url else {}
    secret = meter.dashboard_secret()
    if embed == "balance":
        sealed = sessions.seal(secret, "embed", opened.account_id, now + SESSION_LIFETIME)
        return RedirectResponse(f"/portal/embed/balance?s={quote(sealed)}", status_code=303)
    value = sessions.seal(secret, "portal", opened.account_id, now + SESSION_LIFETIME, extra)
    response = RedirectResponse("/portal", status_code=303)
    sessions.set_cookie(request, response, "portal", value, SESSION_LIFETIME)
    return response


@dataclass(frozen=True)
class PoolView:
    name: str
    used: int
    limit: int | None
    percentage: int | None
    unlimited: bool
    available: int


def balance_state(settings: Settings, balance: Balance) -> str:
    """``healthy``, ``low`` or ``critical`` by the settings' thresholds, as the stats and
    the balance's warnings say it."""
    return level_of(balance.available, settings).value


def bar_state(percentage: int | None) -> str:
    if percentage is None or percentage < 75:
        return ""
    return "critical" if percentage >= 90 else "low"


CHART_KEYS = {"feature": "feature", "model": "model", "member": "member"}


def usage_chart(
    meter: CreditMeter, account_id: str | None, today: date, by: str = "feature"
) -> charts.StackedChart:
    """Credits per day of the last 30 days, stacked by feature, model or member."""
    if by not in CHART_KEYS:
        raise PageRefused(400, "Unknown chart", "Usage is shown by feature, model or member.")
    first = today - timedelta(days=CHART_DAYS - 1)
    return usage_between(meter, account_id, first, today, by)


def usage_between(
    meter: CreditMeter, account_id: str | None, first: date, last: date, by: str
) -> charts.StackedChart:
    since = datetime.combine(first, datetime.min.time(), UTC)
    until = datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC)
    rows = [
        (u.day, u.key or f"(no {by})", u.credits)
        for u in meter.daily_usage(account_id, since=since, until=until, by=by)
    ]
    label = f"Credits used per day by {by}, {first:%d %b} to {last:%d %b %Y}"
    return charts.stacked_by_day(rows, first, last, label=label)


def _account_view(meter: CreditMeter, account_id: str) -> dict[str, Any]:
    account = meter.account(account_id)
    balance = meter.balance(account_id)
    settings = meter.settings()
    plan = next((p for p in meter.plans() if p.key == account.plan), None)
    pools = [
        PoolView(
            name=name,
            used=pool.allowance.used,
            limit=pool.allowance.limit,
            percentage=pool.allowance.percentage,
            unlimited=pool.unlimited,
            available=pool.available,
        )
        for name, pool in sorted(balance.pools.items())
    ]
    features = meter.features()
    not_in_plan = [f for f in features if plan is not None and not plan.allows(f.key)]
    return {
        "account": account,
        "balance": balance,
        "settings": settings,
        "plan": plan,
        "pools": pools,
        "not_in_plan": not_in_plan,
        "state": balance_state(settings, balance),
        "allowance_state": bar_state(balance.allowance.percentage),
        "bar_state": bar_state,
    }


def _csrf(meter: CreditMeter, session: Session) -> str:
    return sessions.csrf_token(meter.dashboard_secret(), session)


@router.get("", response_class=HTMLResponse)
def home(
    request: Request, purchase: str = "", checkout: str = "", saved: str = "", by: str = "feature"
) -> HTMLResponse:
    session = portal_session(request)
    meter = _meter(request)
    account_id = session.subject
    view = _account_view(meter, account_id)
    now = meter.clock()
    packs = sorted(meter.packages(), key=lambda p: (p.sort_order, p.price.amount))
    recharge = meter.auto_recharge(account_id)
    bought = None
    recent = meter.purchases(account_id, limit=5).data
    if checkout == "done" and recent:
        bought = recent[0]
    elif purchase:
        try:
            found = meter.purchase(purchase)
        except CreditMeterError:
            found = None
        if found is not None and found.account_id == account_id:
            bought = found
    return render(
        request,
        "portal/home.html",
        title="Credits",
        session=session,
        csrf=_csrf(meter, session),
        packs=packs,
        selling=not isinstance(meter.payments, PaymentsOff),
        purchases=recent,
        pack_names={p.id: p.name for p in meter.packages(include_inactive=True)},
        saved=saved,
        recharge=recharge,
        recharge_card=_card(meter, recharge),
        recharge_cap=_major(recharge, packs),
        chart=usage_chart(meter, account_id, now.date(), by),
        by=by,
        chart_keys=list(CHART_KEYS),
        forecast=meter.forecast(account_id),
        transactions=meter.transactions(account_id, limit=8).data,
        bought=bought,
        return_url=session.extra.get("return_url"),
        **view,
    )


def _card(meter: CreditMeter, recharge: AutoRecharge) -> str | None:
    """The payment method auto-recharge charges: the account's, or the development
    provider's test card."""
    if recharge.payment_method:
        return recharge.payment_method
    return WORKING_CARD if isinstance(meter.payments, DevProvider) else None


def _digits(currency: str) -> int:
    return 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2


def _major(recharge: AutoRecharge, packs: list[Package]) -> str:
    """The monthly cap in major units, for the form."""
    if recharge.monthly_cap is None:
        return ""
    pack = next((p for p in packs if p.id == recharge.package_id), None)
    digits = _digits(pack.price.currency if pack else "usd")
    return str(Decimal(recharge.monthly_cap).scaleb(-digits))


@router.post("/checkout", response_model=None)
def buy(request: Request, form: Form) -> Response:
    """Start a purchase of a pack at the payment provider; its page leads back here."""
    session = checked(request, form)
    meter = _meter(request)
    home_url = f"{base_url(request)}/portal"
    try:
        started = meter.checkout(
            session.subject,
            form.get("package", ""),
            ui_mode="hosted",
            success_url=f"{home_url}?checkout=done",
            cancel_url=home_url,
            by_account=True,
        )
    except CreditMeterError as error:
        raise PageRefused(
            400, "The purchase could not start", error.message, home="/portal"
        ) from None
    url = started.url or home_url
    if isinstance(meter.payments, DevProvider):
        url += "&" + urlencode({"return_to": f"{home_url}?purchase={started.purchase_id}"})
    return RedirectResponse(url, status_code=303)


@router.post("/auto-recharge", response_model=None)
def set_auto_recharge(request: Request, form: Form) -> Response:
    session = checked(request, form)
    meter = _meter(request)
    enabled = form.get("enabled") == "on"
    package_id = form.get("package") or None
    try:
        threshold = int(form.get("threshold", "0") or 0)
        cap_text = form.get("monthly_cap", "").strip()
        cap = None
        if cap_text:
            pack = meter.package(package_id) if package_id else None
            digits = _digits(pack.price.currency if pack else "usd")
            cap = int(Decimal(cap_text).scaleb(digits).to_integral_exact())
    except (ValueError, InvalidOperation):
        raise PageRefused(
            400,
            "Auto-recharge was not changed",
            "The threshold must be a whole number of credits and the cap an amount of money.",
            home="/portal#auto-recharge",
        ) from None
    current = meter.auto_recharge(session.subject)
    try:
        meter.set_auto_recharge(
            session.subject,
            enabled=enabled,
            threshold=threshold,
            package=package_id,
            payment_method=_card(meter, current),
            monthly_cap=cap,
        )
    except CreditMeterError as error:
        raise PageRefused(
            400, "Auto-recharge was not changed", error.message, home="/portal#auto-recharge"
        ) from None
    return RedirectResponse("/portal?saved=auto-recharge#auto-recharge", status_code=303)


def _filters(kind: str, since: str, until: str) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if kind:
        if kind not in {t.value for t in TransactionType}:
            raise PageRefused(400, "Unknown type", f"There is no transaction type {kind}.")
        filters["types"] = (kind,)
    try:
        if since:
            filters["since"] = datetime.combine(date.fromisoformat(since), datetime.min.time(), UTC)
        if until:
            end = date.fromisoformat(until) + timedelta(days=1)
            filters["until"] = datetime.combine(end, datetime.min.time(), UTC)
    except ValueError:
        raise PageRefused(400, "Not a date", "Dates are written 2026-12-31.") from None
    return filters


@router.get("/transactions", response_class=HTMLResponse)
def transactions(
    request: Request, type: str = "", since: str = "", until: str = "", cursor: str = ""
) -> HTMLResponse:
    session = portal_session(request)
    meter = _meter(request)
    filters = _filters(type, since, until)
    page = meter.transactions(session.subject, limit=PAGE_SIZE, cursor=cursor or None, **filters)
    query = {"type": type, "since": since, "until": until}
    return render(
        request,
        "portal/transactions.html",
        title="Transactions",
        session=session,
        account=meter.account(session.subject),
        page=page,
        types=[t.value for t in TransactionType],
        chosen=query,
        next_url=(
            f"/portal/transactions?{urlencode(query | {'cursor': page.next_cursor})}"
            if page.next_cursor
            else None
        ),
        csv_url=f"/portal/transactions.csv?{urlencode(query)}",
        return_url=session.extra.get("return_url"),
    )


@router.get("/transactions.csv", response_class=Response)
def transactions_csv(
    request: Request, type: str = "", since: str = "", until: str = ""
) -> Response:
    session = portal_session(request)
    out = io.StringIO()
    _meter(request).export_transactions_csv(session.subject, out, **_filters(type, since, until))
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{session.subject}-transactions.csv"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/sign-out", response_model=None)
def sign_out(request: Request, form: Form) -> Response:
    session = checked(request, form)
    target = session.extra.get("return_url") or "/portal/signed-out"
    response = RedirectResponse(target, status_code=303)
    sessions.clear_cookie(response, "portal")
    return response


@router.get("/signed-out", response_class=HTMLResponse)
def signed_out(request: Request) -> HTMLResponse:
    return render(
        request,
        "message.html",
        title="Signed out",
        message="You have left the portal. Open it again from the app when you need it.",
        home="",
    )


@router.get("/embed/balance", response_class=HTMLResponse)
def embedded_balance(request: Request, s: str = "") -> HTMLResponse:
    """The balance card alone, for an iframe in the host app's pages: framed only by the
    configured origins. Opened with ``?s=`` from a portal link with ``?embed=balance``
    (a frame of another site gets no SameSite cookie), or with the portal's cookie."""
    meter = _meter(request)
    secret = meter.dashboard_secret()
    session = sessions.unseal(secret, "embed", s, meter.clock()) or sessions.from_request(
        secret, "portal", request, meter.clock()
    )
    origins = " ".join(branding(request).embed_origins) or "'none'"
    if session is None:
        return render(
            request,
            "message.html",
            status=401,
            frame_ancestors=origins,
            title="Session ended",
            message=ENDED,
            home="",
        )
    return render(
        request,
        "portal/embed.html",
        frame_ancestors=origins,
        title="Balance",
        **_account_view(meter, session.subject),
    )
