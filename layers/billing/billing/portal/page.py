"""The tenant's usage page as HTML: server-rendered, inline SVG charts, no external resource.

Invariants:
- every value that comes from data is HTML-escaped; only https:// Stripe links become hrefs;
- the page loads nothing from any other origin (its Content-Security-Policy says so) and works
  without JavaScript (the month form submits); the small inline script only swaps the month in place
  by calling the page's JSON route;
- each chart has exactly one point (``<rect class="point">``) per day shown, and the same figures as
  an accessible table;
- money is shown from Decimals (statement amounts exactly as invoiced, in cents), never floats;
- a tenant with a billing calendar sees its own periods (named by their labels, in its zone) and
  every day and time in its time zone, which the header names; a tenant without one sees UTC
  calendar months and UTC times, as the page always showed them.

Length: the page is one document (its CSS, its script, and each section's markup in the words the
customer reads); the charts, the metric table and the alerts and corrections blocks are their own
modules already, and what is left shares the formatting helpers and the period's wording.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from html import escape

from billing.kernel.calendar import DEFAULT_TIME_ZONE, Period, zone
from billing.kernel.periods import Month, utc
from billing.portal.alerts_block import alerts_block
from billing.portal.charts import bar_chart
from billing.portal.corrections_block import corrections_block
from billing.portal.metric_table import metrics_section
from billing.portal.view import DayUsage, PortalView, Shown
from billing.rating import wording

STANDING = {  # status -> (short, explanation, style)
    "active": ("Good standing", "Every invoice is paid or not yet due.", "ok"),
    "past_due": ("Payment overdue", "An invoice is unpaid; it is retried automatically.", "warn"),
    "suspended": ("Suspended", "New usage is refused until the open invoice is paid.", "bad"),
}

CSS = """
:root{--fg:#1b1f24;--muted:#4a5560;--line:#d5dbe1;--bg:#ffffff;--card:#f5f7f9;--accent:#0b5cad;--ok:#17602b;--warn:#8a4b00;--bad:#a3161b}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header,main,footer{max-width:1080px;margin:0 auto;padding:0 16px}
header{padding-top:16px;display:flex;flex-wrap:wrap;gap:12px;align-items:flex-end;justify-content:space-between}
h1{font-size:1.5rem;margin:0}h2{font-size:1.15rem;margin:28px 0 8px}
.sub{color:var(--muted);margin:2px 0 0}
form{display:flex;gap:8px;align-items:center}
select,button,.button{font:inherit;padding:6px 10px;border:1px solid var(--muted);border-radius:6px;background:#fff;color:var(--fg)}
button,.button{background:var(--accent);color:#fff;border-color:var(--accent);cursor:pointer;text-decoration:none;display:inline-block}
a{color:var(--accent)}
:focus-visible{outline:3px solid #f2a900;outline-offset:2px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:12px;margin-top:16px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.card .label{color:var(--muted);font-size:.9rem;margin:0}
.card .value{font-size:1.5rem;font-weight:600;margin:2px 0 0;font-variant-numeric:tabular-nums}
.card .note{color:var(--muted);font-size:.85rem;margin:4px 0 0}
progress{width:100%;height:12px}
.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:16px}
figure{margin:0;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px}
figcaption{font-weight:600;margin-bottom:4px}
svg{width:100%;height:auto;display:block}
svg .point{fill:var(--accent)}svg .axis{stroke:var(--muted);stroke-width:1}svg .grid{stroke:var(--line);stroke-width:1}
svg text{fill:var(--muted);font-size:13px}
.scroll{overflow-x:auto;background:linear-gradient(to right,var(--bg) 30%,rgba(255,255,255,0)) left/40px 100% no-repeat local,linear-gradient(to left,var(--bg) 30%,rgba(255,255,255,0)) right/40px 100% no-repeat local,radial-gradient(farthest-side at 0 50%,rgba(0,0,0,.3),rgba(0,0,0,0)) left/14px 100% no-repeat scroll,radial-gradient(farthest-side at 100% 50%,rgba(0,0,0,.3),rgba(0,0,0,0)) right/14px 100% no-repeat scroll}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
td.num,th.num{text-align:right;white-space:nowrap}
tfoot td{font-weight:700;border-top:2px solid var(--fg)}
th .group{display:block;color:var(--muted);font-weight:400;font-size:.9rem}
details{margin-top:6px}summary{cursor:pointer;color:var(--accent)}
footer{color:var(--muted);font-size:.85rem;padding:24px 16px}
.badge{display:inline-block;font-size:.8rem;padding:1px 8px;border-radius:10px;border:1px solid currentColor}
@media (max-width:560px){h1{font-size:1.25rem}.card .value{font-size:1.25rem}th,td{padding:6px 4px}
header>form{width:100%;display:grid;grid-template-columns:minmax(0,1fr) auto;row-gap:2px}header>form label{grid-column:1/-1}
svg text{font-size:18px}
#lines thead,table.stack thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);clip-path:inset(50%)}
#lines tr{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr) auto;column-gap:12px;border-bottom:1px solid var(--line);padding:4px 0}
#lines td{border:0;min-width:0;overflow-wrap:anywhere}#lines td.desc{grid-column:1/-1}
#lines tbody td.num{text-align:left}#lines tbody td.num:last-child{text-align:right}
#lines tbody td[data-label]:not(:empty)::before{content:attr(data-label);display:block;color:var(--muted);font-size:.8rem;font-weight:400}
#lines tfoot tr{grid-template-columns:1fr auto;border-top:2px solid var(--fg);border-bottom:0}#lines tfoot td{border:0}
table.stack tr{display:block;border-bottom:1px solid var(--line);padding:6px 0}
table.stack th[scope=row]{display:block;border:0;padding:0 4px;overflow-wrap:anywhere}
table.stack td{display:flex;justify-content:space-between;gap:12px;border:0;padding:1px 4px;white-space:normal;text-align:right;overflow-wrap:anywhere}
table.stack td::before{content:attr(data-label);color:var(--muted);text-align:left;white-space:nowrap}}
"""

SCRIPT = """
(function(){
  var form=document.getElementById('month-form');if(!form||!window.fetch)return;
  var select=document.getElementById('month');
  select.addEventListener('change',function(){
    var token=form.elements.token.value, month=select.value;
    var status=document.getElementById('status');status.textContent='Loading '+month+'\\u2026';
    fetch('portal/data?month='+encodeURIComponent(month),{headers:{'Authorization':'Bearer '+token},credentials:'omit'})
      .then(function(r){if(!r.ok)throw new Error(r.status);return r.json();})
      .then(function(data){
        document.getElementById('content').innerHTML=data.html;
        history.replaceState(null,'','portal?token='+encodeURIComponent(token)+'&month='+encodeURIComponent(month));
        status.textContent='Showing '+month;
      })
      .catch(function(){form.submit();});
  });
})();
"""


# --------------------------------------------------------------------------------------- formatting
def usd(amount: Decimal) -> str:
    """$1,234.56 (half-up to cents; a negative amount as -$1.00)."""
    cents = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents):,.2f}"


def count(n: int | Decimal) -> str:
    """1,234,567 (a Decimal quantity with decimals keeps them: 1,234.5)."""
    if isinstance(n, Decimal) and n != n.to_integral_value():
        return f"{n.normalize():,f}"
    return f"{int(n):,}"


def utc_text(at: datetime) -> str:
    return at.strftime("%d %b %Y, %H:%M UTC")


def local_text(at: datetime, time_zone: str) -> str:
    """``20 Nov 2025, 21:00 Asia/Kolkata`` (UTC as ``utc_text``)."""
    if time_zone == DEFAULT_TIME_ZONE:
        return utc_text(at)
    return f"{at.astimezone(zone(time_zone)):%d %b %Y, %H:%M} {time_zone}"


def clock_text(at: datetime, time_zone: str) -> str:
    """``15:30 UTC``, ``21:00 Asia/Kolkata``."""
    return f"{at.astimezone(zone(time_zone)):%H:%M} {time_zone}"


def as_of_text(at: datetime, now: datetime, time_zone: str) -> str:
    """When figures are from: the time alone (``21:00 Asia/Kolkata``) if ``at`` is on the local day
    of ``now``, else with its date (``20 Nov 2025, 21:00 Asia/Kolkata``): a time with no date reads
    as today's."""
    local = zone(time_zone)
    if at.astimezone(local).date() == now.astimezone(local).date():
        return clock_text(at, time_zone)
    return local_text(at, time_zone)


def month_name(month: Shown) -> str:
    """``November 2025`` for a UTC month; a tenant period's label (``2025-11 (Asia/Kolkata)``), as
    the period selector lists it."""
    return month.label() if isinstance(month, Period) else month.start.strftime("%B %Y")


def period_words(month: Shown) -> str:
    """The month or period in a sentence: ``November 2025`` for a UTC month and for a local calendar
    month of a tenant's zone, else its local days (``15 Jan 2026 – 14 Feb 2026``). Never the zone:
    the page's header names it once for every date and time."""
    if not isinstance(month, Period):
        return month_name(month)
    label = month.label().removesuffix(f" ({month.calendar.time_zone})")
    if len(label) == 7 and label[4] == "-":  # the label of a whole local calendar month: 2025-11
        return month.local_start().strftime("%B %Y")
    return label


def _as_of(view: PortalView, at: datetime) -> str:
    """An "as of" time of the page, dated unless it is of the page's own (local) day."""
    return as_of_text(at, view.generated_at, view.time_zone)


def _unit(view: PortalView) -> str:
    """What the page calls what it shows: a month, or a period of the tenant's calendar."""
    return "period" if isinstance(view.month, Period) else "month"


def metered_usd(amount: Decimal) -> str:
    """Dollars and cents, but a non-zero amount under a cent keeps two significant digits ($0.00031),
    so a tenant's first tiny costs never read as $0.00."""
    if amount == 0 or abs(amount) >= Decimal("0.01"):
        return usd(amount)
    tiny = amount.quantize(Decimal(1).scaleb(amount.adjusted() - 1), rounding=ROUND_HALF_UP)
    return f"{'-' if tiny < 0 else ''}${abs(tiny).normalize():f}"


def _day_table(days: Sequence[DayUsage], time_zone: str = DEFAULT_TIME_ZONE) -> str:
    rows = "".join(
        f'<tr><th scope="row">{d.day:%a %d %b}</th><td class="num" data-label="Queries">{count(d.queries)}</td>'
        f'<td class="num" data-label="Metered cost">{metered_usd(d.cost_usd)}</td></tr>'
        for d in days
    )
    return (
        '<details><summary>Show every day as a table</summary><div class="scroll"><table>'
        f'<caption class="sub">Per day, {escape(time_zone)} days</caption>'
        '<thead><tr><th scope="col">Day</th><th scope="col" class="num">Queries</th>'
        f'<th scope="col" class="num">Metered cost</th></tr></thead><tbody>{rows}</tbody></table></div></details>'
    )


# --------------------------------------------------------------------------------------- sections
def _cards(view: PortalView) -> str:
    queries = sum(d.queries for d in view.rollup.days)
    q = view.quota
    if q.limit is None:
        quota_value, quota_bar = f"{count(q.used)} used", '<p class="note">No query limit on this plan</p>'
    else:
        pct = Decimal(100) * q.used / q.limit if q.limit else Decimal(100)
        quota_value = f"{count(q.used)} / {count(q.limit)}"
        quota_bar = (
            f'<progress id="quota-bar" max="{q.limit}" value="{min(q.used, q.limit)}" '
            f'aria-label="Quota used: {pct:.0f} percent">{pct:.0f}%</progress>'
        )
    short, explanation, css = STANDING.get(view.payment_status, (view.payment_status, "", "warn"))
    current = view.month.contains(view.generated_at)
    currency = view.statement.currency if view.statement is not None else "usd"
    if view.stored:
        label, kind = (
            "Total invoiced",
            f"Statement issued {view.statement.invoice_date if view.statement else ''}",
        )
    elif current and view.as_of is not None:
        label, kind = (
            f"{_unit(view).title()}-to-date cost",
            f"Preview as of {_as_of(view, view.as_of)}",
        )
    elif current:
        label, kind = f"{_unit(view).title()}-to-date cost", "Preview: what would be invoiced now"
    else:
        label, kind = f"Cost of the {_unit(view)}", f"Preview: the {_unit(view)} is not closed yet"
    return (
        '<section class="cards" aria-label="Summary">'
        f'<div class="card"><p class="label">{label}</p>'
        f'<p class="value" id="total" data-amount="{view.total:.2f}">{money(view.total, currency)}</p>'
        f'<p class="note">{kind}</p></div>'
        f'<div class="card"><p class="label">Queries in {escape(period_words(view.month))}</p>'
        f'<p class="value" id="queries">{count(queries)}</p></div>'
        f'<div class="card"><p class="label">Query quota used</p><p class="value" id="quota">{quota_value}</p>'
        f'{quota_bar}<p class="note">Resets {escape(local_text(q.resets_at, view.time_zone))}</p></div>'
        f'<div class="card"><p class="label">Payment standing</p>'
        f'<p class="value {css}" id="standing" data-status="{escape(view.payment_status)}">'
        f'{escape(short)}</p><p class="note">{escape(explanation)}</p></div>'
        f"{_credit_card(view)}</section>"
    )


def money(amount: Decimal, currency: str) -> str:
    """In the currency's own form, as the invoice's lines say it (billing.rating.wording.money):
    ``-$1,234.50``, ``€99.00``, ``¥1,230``, ``1.235 KWD``."""
    return wording.money(amount, currency)


def _credit_card(view: PortalView) -> str:
    """The prepaid credit still usable (unexpired grants less what issued statements used), for a
    tenant holding grants; the next expiry in the statement credit line's words
    (``billing.rating.wording.credit``: the expiry instant's UTC day, ``expires 31 Mar 2026``)."""
    summary = view.credits
    if not summary:
        return ""
    grants = summary["grants"]
    balance = {c: Decimal(v) for c, v in summary["balance"].items()} or {grants[0]["currency"]: Decimal(0)}
    value = " + ".join(money(v, c) for c, v in balance.items())
    active = [g for g in grants if not g["expired"] and Decimal(g["remaining"]) > 0]
    expiries = sorted(g["expires_at"] for g in active if g["expires_at"])
    note = f"{len(active)} active grant{'' if len(active) == 1 else 's'}"
    if expiries:
        # in the words of the statement's credit line (the invoice's wording), so the two agree
        note += f"; the next expires {wording.day(utc(datetime.fromisoformat(expiries[0])))}"
    amounts = ",".join(f"{c}:{v}" for c, v in balance.items())
    return (
        '<div class="card"><p class="label">Prepaid credit left</p>'
        f'<p class="value" id="credit-left" data-amounts="{escape(amounts)}">{escape(value)}</p>'
        f'<p class="note" id="credit-note">{escape(note)}. Issued statements already deducted.</p></div>'
    )


def _statement(view: PortalView) -> str:
    s = view.statement
    if s is None:
        return f'<h2 id="statement-h">Statement</h2><p>No plan was in force this {_unit(view)}: nothing to bill.</p>'
    rows = "".join(
        f'<tr data-line="{escape(line.line_id)}"><td class="desc">{escape(line.description)}'
        + (
            f' <span class="badge">for {escape(line.adjustment_month)}</span>'
            if line.adjustment_month
            else ""
        )
        + f'</td><td class="num qty" data-label="Quantity">{count(line.quantity)}</td>'
        f'<td class="num unit" data-label="Unit price">'
        f"{'' if line.unit_price is None else escape(_unit_price(line.unit_price, s.currency))}</td>"
        f'<td class="num" data-label="Amount" data-amount="{line.amount:.2f}">{money(line.amount, s.currency)}</td></tr>'
        for line in s.lines
    )
    what = (
        f"Issued {escape(s.invoice_date)}"
        if view.stored
        else f"Preview of the statement for {escape(period_words(view.month))}, as it would be invoiced now"
        if view.as_of is None
        else f"Preview of the statement for {escape(period_words(view.month))}, as of {escape(_as_of(view, view.as_of))}"
    )
    csv = base64.b64encode(view.lines_csv()).decode()
    return (
        '<h2 id="statement-h">Statement lines</h2>'
        f'<p class="sub">{what}. Amounts in {escape(s.currency.upper())}.</p>'
        '<div class="scroll"><table id="lines" aria-labelledby="statement-h"><thead><tr>'
        '<th scope="col">Line</th><th scope="col" class="num">Quantity</th>'
        '<th scope="col" class="num unit">Unit price</th><th scope="col" class="num">Amount</th></tr></thead>'
        f"<tbody>{rows}</tbody>"
        f'<tfoot><tr><td colspan="3" class="qty">Total</td><td class="num" id="lines-total">{money(s.total, s.currency)}</td></tr></tfoot>'
        "</table></div>"
        f'<p><a class="button" id="csv" download="{escape(view.csv_filename())}" '
        f'href="data:text/csv;charset=utf-8;base64,{csv}">Download the lines as CSV</a></p>'
    )


def _unit_price(price: Decimal, currency: str = "usd") -> str:
    return wording.unit_price(price, currency)


def _models(view: PortalView) -> str:
    if not view.rollup.models:
        return f'<h2 id="models-h">Usage by model</h2><p>No usage recorded this {_unit(view)}.</p>'
    rows = "".join(
        f'<tr><th scope="row">{escape(m.model or "Storage and other usage")}</th>'
        f'<td class="num" data-label="Queries">{count(m.queries)}</td>'
        f'<td class="num" data-label="Tokens in / out">{count(m.input_tokens)} /<wbr> {count(m.output_tokens)}</td>'
        f'<td class="num" data-label="Metered cost">{metered_usd(m.cost_usd)}</td></tr>'
        for m in view.rollup.models
    )
    return (
        '<h2 id="models-h">Usage by model</h2><div class="scroll"><table id="models" class="stack" aria-labelledby="models-h">'
        '<thead><tr><th scope="col">Model</th><th scope="col" class="num">Queries</th>'
        '<th scope="col" class="num">Tokens in / out</th>'
        f'<th scope="col" class="num">Metered cost</th></tr></thead><tbody>{rows}</tbody></table></div>'
    )


def _metrics(view: PortalView) -> str:
    current = view.month.contains(view.generated_at)
    as_of = f", as of {_as_of(view, view.metrics_as_of)}" if view.metrics_as_of is not None else ""
    return metrics_section(
        view.metrics,
        f"so far this {_unit(view)}{as_of}" if current else f"in {period_words(view.month)}",
        view.time_zone,
        current=current,
    )


def _invoices(view: PortalView) -> str:
    if not view.open_invoices:
        return '<h2 id="invoices-h">Open invoices</h2><p id="no-invoices">No open invoices.</p>'
    items = []
    for inv in view.open_invoices:
        label = f"invoice {inv.number or inv.invoice_id} for {_invoice_period(view, inv.month)}"
        amount = money(inv.amount, inv.currency)
        url = inv.hosted_invoice_url or ""
        link = (
            f'<a href="{escape(url)}" target="_blank" rel="noopener noreferrer">View and pay {escape(label)}</a>'
            if url.startswith("https://")
            else escape(label[0].upper() + label[1:])
        )
        items.append(
            f'<li data-invoice="{escape(inv.invoice_id)}">{link}: {amount} ({escape(inv.status)})</li>'
        )
    return f'<h2 id="invoices-h">Open invoices</h2><ul id="invoices">{"".join(items)}</ul>'


def _invoice_period(view: PortalView, key: str) -> str:
    """An invoice's period in words: a month's name, a tenant period's words (its key if not listed)."""
    for shown in view.months:
        if str(shown) == key:
            return period_words(shown)
    try:
        return month_name(Month.parse(key))
    except ValueError:
        return key


def _cost_chart(view: PortalView) -> str:
    """The metered cost per day; for a tenant whose plan charges catalog metrics and that has no
    metered cost, a sentence pointing to where its charges are instead of a chart of zeros."""
    days = view.rollup.days
    if view.metrics and all(d.cost_usd == 0 for d in days):
        when = (
            f"so far this {_unit(view)}"
            if view.month.contains(view.generated_at)
            else f"in {period_words(view.month)}"
        )
        return (
            f'<p id="cost-empty">No metered cost {escape(when)}. What your plan charges for is under '
            '<a href="#metrics-h">Usage by metric</a>, and the statement lines price it.</p>'
        )
    return bar_chart(
        "cost-chart",
        f"Metered cost per day, {period_words(view.month)}",
        days,
        lambda d: d.cost_usd,
        metered_usd,
        prefix="$",
    )


def _usage_as_of(view: PortalView) -> str:
    """When the current period's per-day and per-model figures were read (cached: up to the
    preview's max age ago); nothing for a past period, as for its metric figures."""
    if view.usage_as_of is None or not view.month.contains(view.generated_at):
        return ""
    return (
        f'<p class="sub" id="usage-as-of">Per day and per model as of '
        f"{escape(_as_of(view, view.usage_as_of))}.</p>"
    )


def render_content(view: PortalView) -> str:
    """The month-dependent part of the page (what the JSON route returns as ``html``)."""
    days = view.rollup.days
    return (
        _cards(view)
        + '<h2 id="charts-h">Per day</h2>'
        + _usage_as_of(view)
        + '<div class="charts">'
        + '<figure><figcaption id="queries-cap">Queries per day</figcaption>'
        + bar_chart(
            "queries-chart",
            f"Queries per day, {period_words(view.month)}",
            days,
            lambda d: Decimal(d.queries),
            count,
            whole=True,
        )
        + "</figure>"
        + '<figure><figcaption id="cost-cap">Metered cost per day (USD)</figcaption>'
        + _cost_chart(view)
        + "</figure></div>"
        + _day_table(days, view.time_zone)
        + '<p class="sub">Metered cost is the usage priced when it happened; the statement adds plan fees and tiers.</p>'
        + _statement(view)
        + _models(view)
        + _metrics(view)
        + _invoices(view)
        + alerts_block(view.alerts)
        + corrections_block(
            view.corrections,
            f"Corrections this {_unit(view)}"
            if view.month.contains(view.generated_at)
            else f"Corrections to {period_words(view.month)}",
            metered_usd,
            view.time_zone,
        )
    )


def render_page(view: PortalView, token: str, nonce: str | None = None) -> tuple[str, str]:
    """(HTML, nonce) of the whole page; the nonce goes into the response's Content-Security-Policy."""
    nonce = nonce or secrets.token_urlsafe(16)
    options = "".join(
        f'<option value="{m}"{" selected" if m == view.month else ""}>{escape(month_name(m))}</option>'
        for m in view.months
    )
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex">'
        '<link rel="icon" href="data:,">'
        f"<title>Usage and invoice: {escape(view.tenant_name)}, {escape(month_name(view.month))}</title>"
        f'<style nonce="{nonce}">{CSS}</style></head><body>'
        f"<header><div><h1>{escape(view.tenant_name)}</h1>"
        f'<p class="sub">Usage and invoice, all times {escape(view.time_zone)}. '
        f"Updated {escape(local_text(view.generated_at, view.time_zone))}.</p></div>"
        '<form id="month-form" method="get" action="portal">'
        f'<input type="hidden" name="token" value="{escape(token)}">'
        f'<label for="month">{_unit(view).title()}</label><select id="month" name="month">{options}</select>'
        '<button type="submit">Show</button></form></header>'
        f'<main><p id="status" class="sub" role="status" aria-live="polite"></p><div id="content">{render_content(view)}</div></main>'
        f"<footer>Account ID: {escape(view.tenant_id)}. The figures per day and per model are updated as "
        "usage arrives; the statement is computed exactly as it will be invoiced. This link is personal "
        "and expires.</footer>"
        f'<script nonce="{nonce}">{_script(view)}</script></body></html>'
    )
    return html, nonce


def _script(view: PortalView) -> str:
    """The month swap script; it names a tenant period by its option's label, a month by its value."""
    if not isinstance(view.month, Period):
        return SCRIPT
    return (
        SCRIPT.replace(
            "month=select.value;", "month=select.value, name=select.options[select.selectedIndex].text;"
        )
        .replace("'Loading '+month", "'Loading '+name")
        .replace("'Showing '+month", "'Showing '+name")
    )


def error_page(status: int, message: str) -> str:
    """What an invalid or expired link shows: the reason, nothing of any tenant."""
    title = "Link expired or invalid" if status == 403 else "Cannot show this page"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="referrer" content="no-referrer">'
        f'<title>{title}</title></head><body><main><h1>{title}</h1><p id="error">{escape(message)}</p>'
        "<p>Ask your account contact for a new link.</p></main></body></html>"
    )


def content_security_policy(nonce: str) -> str:
    return (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
