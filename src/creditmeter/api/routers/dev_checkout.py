"""The development provider's checkout page: what Stripe's hosted page is to Stripe, with
no keys and no network. Pay completes the payment at the development provider, which
sends its event as Stripe's webhook would; the worker applies it and credits the account.
Served only when the development provider is the one in use; not in the OpenAPI schema.
Each page needs the purchase's token (``?token=``), given with its checkout only: without
it, a purchase is not found. A ``return_to`` address (the customer portal adds one) is
carried through and offered as a link back once the payment is done."""

from __future__ import annotations

import re
from html import escape
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from creditmeter.api.auth import Meter
from creditmeter.api.security_headers import content_security_policy, inline_source
from creditmeter.core.errors import NotFound
from creditmeter.core.identifiers import IDENTIFIER_PATTERN
from creditmeter.core.payments import Money, Package, Purchase, PurchaseStatus, amount_text
from creditmeter.meter import CreditMeter
from creditmeter.payments.dev import WORKING_CARD, DevProvider

router = APIRouter(prefix="/dev/checkout", include_in_schema=False)

SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹"}

STYLE = """
:root { color-scheme: light dark; --accent: #4f46e5; --muted: #6b7280; --line: #e5e7eb; }
* { box-sizing: border-box; }
body { margin: 0; min-height: 100vh; display: grid; place-items: center; padding: 1.5rem;
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  background: #f3f4f6; color: #111827; }
main { width: 100%; max-width: 26rem; background: #fff; border-radius: 14px; padding: 2rem;
  box-shadow: 0 1px 3px rgb(0 0 0 / .08), 0 12px 32px rgb(0 0 0 / .08); }
.badge { display: inline-block; font-size: .75rem; font-weight: 600; letter-spacing: .04em;
  text-transform: uppercase; color: #92400e; background: #fef3c7; border-radius: 999px;
  padding: .15rem .6rem; }
h1 { font-size: 1.35rem; margin: .9rem 0 .25rem; }
.price { font-size: 2.25rem; font-weight: 700; margin: .5rem 0 1rem; }
dl { display: grid; grid-template-columns: auto 1fr; gap: .35rem 1rem; margin: 0 0 1.5rem;
  padding: 1rem 0; border-top: 1px solid var(--line); border-bottom: 1px solid var(--line); }
dt { color: var(--muted); } dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
button { width: 100%; font: inherit; font-weight: 600; color: #fff; background: var(--accent);
  border: 0; border-radius: 10px; padding: .8rem 1rem; cursor: pointer; }
button:hover { filter: brightness(1.1); }
.cancel { display: block; text-align: center; margin-top: 1rem; color: var(--muted); }
p.note { color: var(--muted); font-size: .875rem; margin: 1.25rem 0 0; }
.status { font-weight: 600; }
code { font-size: .85em; }
@media (prefers-color-scheme: dark) {
  body { background: #111827; color: #f9fafb; } main { background: #1f2937; }
  :root { --line: #374151; --muted: #9ca3af; }
}
"""


POLICY = content_security_policy(style_src=inline_source(STYLE))
"""The pages' policy, with their one inline style allowed by its hash."""


def format_price(price: Money) -> str:
    """``$9.99`` from 999 ``usd``: integer arithmetic on minor units, never a float."""
    amount = amount_text(price.amount, price.currency)
    symbol = SYMBOLS.get(price.currency)
    return f"{symbol}{amount}" if symbol else f"{amount} {price.currency.upper()}"


def _html(title: str, body: str, *, status: int = 200, refresh: bool = False) -> HTMLResponse:
    meta = '<meta http-equiv="refresh" content="2">' if refresh else ""
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{escape(title)} · creditmeter</title><style>{STYLE}</style></head>"
        f'<body><main><span class="badge">Development checkout</span>{body}</main></body></html>'
    )
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": POLICY}
    return HTMLResponse(page, status_code=status, headers=headers)


def _message(title: str, text: str, *, status: int = 200, refresh: bool = False) -> HTMLResponse:
    return _html(title, f"<h1>{escape(title)}</h1><p>{text}</p>", status=status, refresh=refresh)


def _not_found(purchase_id: str) -> HTMLResponse:
    return _message(
        "Purchase not found",
        f"There is no purchase <code>{escape(purchase_id)}</code> to pay here.",
        status=404,
    )


def _found(meter: CreditMeter, purchase_id: str, token: str) -> Purchase | None:
    """The development provider's purchase of this id, if there is one and ``token`` is
    its page's."""
    provider = meter.payments
    assert isinstance(provider, DevProvider)
    if not re.fullmatch(IDENTIFIER_PATTERN, purchase_id):
        return None
    if not provider.admits(purchase_id, token):
        return None
    try:
        purchase = meter.purchase(purchase_id)
    except NotFound:
        return None
    return purchase if purchase.provider == provider.name else None


def _path(purchase: Purchase, token: str, page: str = "", return_to: str = "") -> str:
    """A page of the purchase's, with its token, escaped for an attribute."""
    back = f"&return_to={quote(return_to, safe='')}" if _returnable(return_to) else ""
    return escape(
        f"/dev/checkout/{quote(purchase.id)}{page}?token={quote(token)}{back}", quote=True
    )


def _returnable(return_to: str) -> bool:
    return return_to.startswith(("http://", "https://")) and len(return_to) <= 2000


def _back_link(return_to: str) -> str:
    if not _returnable(return_to):
        return ""
    return f' <a href="{escape(return_to, quote=True)}">Return to the shop</a>'


def _package(meter: CreditMeter, package_id: str) -> Package | None:
    try:
        return meter.package(package_id)
    except NotFound:
        return None


def _not_pending(purchase: Purchase, *, status: int = 200) -> HTMLResponse:
    state = escape(purchase.status.value)
    if purchase.status is PurchaseStatus.FULFILLED:
        text = f"This purchase is paid and its {purchase.credits:,} credits are credited."
    else:
        text = f'This purchase is <span class="status">{state}</span>: there is nothing to pay.'
    return _message("Nothing to pay", text, status=status)


@router.get("/{purchase_id}", response_class=HTMLResponse)
def checkout_page(
    purchase_id: str, meter: Meter, token: str = "", return_to: str = ""
) -> HTMLResponse:
    purchase = _found(meter, purchase_id, token)
    if purchase is None:
        return _not_found(purchase_id)
    if purchase.status is not PurchaseStatus.PENDING:
        return _not_pending(purchase)
    pack = _package(meter, purchase.package_id)
    name = pack.name if pack is not None else purchase.package_id
    bonus = purchase.bonus_credits
    base = purchase.credits - bonus
    rows = [("Credits", f"{base:,}")]
    if bonus:
        rows.append(("Bonus credits", f"+{bonus:,}"))
    rows += [("You get", f"{purchase.credits:,} credits"), ("Account", purchase.account_id)]
    details = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    body = (
        f"<h1>{escape(name)}</h1>"
        f'<div class="price">{escape(format_price(purchase.price))}</div>'
        f"<dl>{details}</dl>"
        f'<form method="post" action="{_path(purchase, token, "/pay", return_to)}">'
        f'<button type="submit">Pay {escape(format_price(purchase.price))}</button></form>'
        f'<a class="cancel" href="{_path(purchase, token, "/cancelled", return_to)}">Cancel</a>'
        '<p class="note">No real money moves: the development payment provider pays at once. '
        f"For auto-recharge, its saved card is <code>{WORKING_CARD}</code>.</p>"
    )
    return _html(f"Pay for {name}", body)


@router.post("/{purchase_id}/pay", response_class=HTMLResponse, response_model=None)
def pay(
    purchase_id: str, meter: Meter, token: str = "", return_to: str = ""
) -> HTMLResponse | RedirectResponse:
    purchase = _found(meter, purchase_id, token)
    if purchase is None:
        return _not_found(purchase_id)
    if purchase.status is not PurchaseStatus.PENDING:
        return _not_pending(purchase, status=409)
    provider = meter.payments
    assert isinstance(provider, DevProvider)
    provider.complete(purchase, customer_id=meter.payment_customer(purchase.account_id))
    done = f"/dev/checkout/{quote(purchase.id)}/done?token={quote(token)}"
    if _returnable(return_to):
        done += f"&return_to={quote(return_to, safe='')}"
    return RedirectResponse(done, status_code=303)


@router.get("/{purchase_id}/done", response_class=HTMLResponse)
def paid_page(purchase_id: str, meter: Meter, token: str = "", return_to: str = "") -> HTMLResponse:
    purchase = _found(meter, purchase_id, token)
    if purchase is None:
        return _not_found(purchase_id)
    status = purchase.status
    if status is PurchaseStatus.FULFILLED:
        text = (
            f"{purchase.credits:,} credits are on account "
            f"<code>{escape(purchase.account_id)}</code>.{_back_link(return_to)}"
        )
    elif status in (PurchaseStatus.PENDING, PurchaseStatus.PAID):
        text = (
            f"The {purchase.credits:,} credits appear on account "
            f"<code>{escape(purchase.account_id)}</code> once the worker applies the payment, "
            'usually within a second. Purchase status: <span class="status">'
            f"{escape(status.value)}</span>.{_back_link(return_to)}"
        )
    else:
        text = f'Purchase status: <span class="status">{escape(status.value)}</span>.'
        return _message(f"Purchase {status.value}", text)
    pending = status in (PurchaseStatus.PENDING, PurchaseStatus.PAID)
    return _message("Payment done", text, refresh=pending)


@router.get("/{purchase_id}/cancelled", response_class=HTMLResponse)
def cancelled_page(
    purchase_id: str, meter: Meter, token: str = "", return_to: str = ""
) -> HTMLResponse:
    purchase = _found(meter, purchase_id, token)
    if purchase is None:
        return _not_found(purchase_id)
    return _message(
        "Checkout cancelled",
        "Nothing was charged. The purchase stays open: "
        f'<a href="{_path(purchase, token, "", return_to)}">go back to pay</a>.'
        f"{_back_link(return_to)}",
    )
