"""Run the Grafana dashboards' SQL outside Grafana (tests and benches).

Grafana first interpolates template variables (``${tenant:singlequote}``) in the browser, then the
ClickHouse data source plugin (grafana-clickhouse-datasource v4) expands its macros in its backend.
``render`` does the same two steps, with the plugin's own macro definitions (pkg/macros/macros.go):

    $__timeFilter(c)      c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)
    $__timeFilter_ms(c)   same with fromUnixTimestamp64Milli(<ms>)
    $__dateFilter(c)      c >= toDate('<from>') AND c <= toDate('<to>')
    $__dateTimeFilter(d, t) / $__dt(d, t)   both of the above
    $__fromTime / $__toTime            toDateTime(<s>)
    $__fromTime_ms / $__toTime_ms      fromUnixTimestamp64Milli(<ms>)
    $__timeInterval(c)    toStartOfInterval(toDateTime(c), INTERVAL <interval s> second)
    $__timeInterval_ms(c) toStartOfInterval(toDateTime64(c, 3), INTERVAL <ms> millisecond)
    $__interval_s         <interval s>

An unknown macro or variable raises, so a dashboard cannot ship SQL this module cannot check.
A panel on Grafana's Dashboard data source (``-- Dashboard --``, the target's ``panelId`` naming
another panel) sends no query: Grafana gives it the source panel's query results (as they come from
the data source, not the source panel's transformations). ``Dashboard.queries`` lists only the
queries Grafana sends; ``Dashboard.shown`` gives any panel's query as Grafana runs it (the source's
SQL for a shared panel) with that panel's transformations, which ``transform`` applies to rows (the
two transformations the dashboards use: ``filterFieldsByName`` and a ``reduce`` of each field).

``Dashboard.resolve`` fills the query variables not chosen (a hidden one, such as the tenant's
``time_zone``) as Grafana does: in dashboard order, each from its query's first value, so a variable
can read those before it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PLUGIN_TYPE = "grafana-clickhouse-datasource"
SHARED_UID = "-- Dashboard --"
_MACRO = re.compile(r"\$__(\w+)(?:\(([^()]*)\))?")
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(?!__)(\w+)")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    interval: timedelta = timedelta(hours=1)

    @classmethod
    def of(cls, start: datetime, end: datetime, interval: timedelta = timedelta(hours=1)) -> TimeRange:
        def aware(dt: datetime) -> datetime:
            return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)

        return cls(aware(start), aware(end), interval)


@dataclass(frozen=True)
class Query:
    """One SQL query of a dashboard: a panel target or a template variable."""

    dashboard: str
    kind: str  # "panel" or "variable"
    title: str  # panel title or variable name
    ref_id: str
    raw_sql: str
    format: int | None = None
    panel: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    transformations: tuple[dict[str, Any], ...] = field(default=(), compare=False, repr=False)

    def transform(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows as the panel shows them (after its transformations)."""
        return transform(rows, self.transformations)


def shares(panel: dict[str, Any]) -> int | None:
    """The id of the panel whose query results ``panel`` shows (Dashboard data source), else None."""
    source = panel.get("datasource") or {}
    if source.get("uid") != SHARED_UID:
        return None
    (target,) = panel.get("targets", [])
    return int(target["panelId"])


def transform(rows: list[dict[str, Any]], transformations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Grafana's transformations of a panel, in order; one it has no rule for here raises."""
    for step in transformations:
        options = step.get("options", {})
        if step.get("id") == "filterFieldsByName" and set(options) == {"include"}:
            names = options["include"]["names"]
            rows = [{k: row[k] for k in names if k in row} for row in rows]
        elif (
            step.get("id") == "reduce"
            and options.get("mode") == "reduceFields"
            and options.get("reducers") == ["sum"]
        ):
            if rows and any(isinstance(v, datetime) for v in rows[0].values()):
                raise TemplateError("reduce: a time field is left in (filter it out first)")
            keys = list(rows[0]) if rows else []
            # a sum over no rows is 0; a field of only nulls sums to null
            rows = [
                {
                    k: sum(v for v in values)
                    if (values := [r[k] for r in rows if r[k] is not None])
                    else None
                    for k in keys
                }
            ]
        else:
            raise TemplateError(f"transformation {step.get('id')!r} with {options} is not supported here")
    return rows


@dataclass
class Dashboard:
    path: Path
    model: dict[str, Any]

    @property
    def title(self) -> str:
        return str(self.model.get("title", self.path.stem))

    @property
    def uid(self) -> str:
        return str(self.model.get("uid", ""))

    def panels(self) -> Iterator[dict[str, Any]]:
        for panel in self.model.get("panels", []):
            yield panel
            yield from panel.get("panels", [])  # collapsed rows keep their panels inside

    def variables(self) -> list[dict[str, Any]]:
        return list(self.model.get("templating", {}).get("list", []))

    def resolve(
        self,
        given: dict[str, str | list[str]],
        time_range: TimeRange,
        fetch: Callable[[str], Sequence[Sequence[Any]]],
    ) -> dict[str, str | list[str]]:
        """``given`` plus every query variable it lacks, set to the first value its query returns
        (``fetch`` runs SQL and returns rows); a variable whose query returns nothing is left unset."""
        values = dict(given)
        for variable in self.variables():
            name = variable.get("name", "")
            if variable.get("type") != "query" or name in values:
                continue
            sql = variable.get("query")
            sql = sql.get("rawSql", sql.get("query")) if isinstance(sql, dict) else sql
            rows = fetch(render(str(sql), time_range, values))
            if rows:
                values[name] = str(rows[0][0])
        return values

    def shown(self, title: str) -> Query:
        """The query whose rows the panel (or the variable) of this title shows, as Grafana runs it:
        a shared panel's is its source panel's SQL with the shared panel's transformations."""
        for variable_query in self.queries():
            if variable_query.kind == "variable" and variable_query.title == title:
                return variable_query
        panel = next(p for p in self.panels() if p.get("title") == title)
        source_id = shares(panel)
        source = panel if source_id is None else next(p for p in self.panels() if p.get("id") == source_id)
        if shares(source) is not None:
            raise TemplateError(f"panel {title}: its source panel shares another panel's results")
        (target,) = [t for t in source.get("targets", []) if not t.get("hide")]
        return Query(
            self.title,
            "panel",
            title,
            target.get("refId", "A"),
            target.get("rawSql", ""),
            target.get("format"),
            panel,
            tuple(panel.get("transformations", [])),
        )

    def queries(self) -> list[Query]:
        """Every query Grafana sends to the data source: each query variable's, each panel target's
        (a panel sharing another's results sends none)."""
        found: list[Query] = []
        for variable in self.variables():
            if variable.get("type") == "query":
                sql = variable.get("query")
                sql = sql.get("rawSql", sql.get("query")) if isinstance(sql, dict) else sql
                found.append(Query(self.title, "variable", variable["name"], variable["name"], str(sql)))
        for panel in self.panels():
            if shares(panel) is not None:
                continue
            for target in panel.get("targets", []):
                if target.get("hide"):
                    continue
                found.append(
                    Query(
                        self.title,
                        "panel",
                        panel.get("title", ""),
                        target.get("refId", "A"),
                        target.get("rawSql", ""),
                        target.get("format"),
                        panel,
                        tuple(panel.get("transformations", [])),
                    )
                )
        return found


def load_dashboards(directory: Path) -> list[Dashboard]:
    return [Dashboard(path, json.loads(path.read_text())) for path in sorted(directory.glob("*.json"))]


def _format_value(name: str, value: str | list[str], fmt: str | None) -> str:
    values = value if isinstance(value, list) else [value]
    if fmt in (None, "raw", "text"):
        if len(values) != 1 and fmt is None:
            # Grafana's default for a multi-value SQL variable: quoted, comma separated.
            return ",".join("'" + v.replace("'", "''") + "'" for v in values)
        return ",".join(values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "csv":
        return ",".join(values)
    raise TemplateError(f"variable {name}: format {fmt!r} is not supported here")


def interpolate(sql: str, variables: dict[str, str | list[str]]) -> str:
    """Grafana's template-variable step (before the plugin sees the SQL)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(5)
        fmt = match.group(2) or match.group(4)
        if name not in variables:
            raise TemplateError(f"unknown template variable ${name}")
        return _format_value(name, variables[name], fmt)

    return _VARIABLE.sub(replace, sql)


def _dt(instant: datetime) -> str:
    return f"toDateTime({int(instant.timestamp())})"


def _dt64(instant: datetime) -> str:
    return f"fromUnixTimestamp64Milli({int(instant.timestamp() * 1000)})"


def _date(instant: datetime) -> str:
    return f"toDate('{instant.strftime('%Y-%m-%d')}')"


def expand_macros(sql: str, time_range: TimeRange) -> str:
    """The data source plugin's macro step."""
    start, end = time_range.start, time_range.end
    seconds = max(int(time_range.interval.total_seconds()), 1)
    millis = max(int(time_range.interval.total_seconds() * 1000), 1)

    def args_of(name: str, raw: str | None, count: int) -> list[str]:
        args = [a.strip() for a in (raw or "").split(",")] if raw is not None else []
        if len(args) != count or not all(args):
            raise TemplateError(f"$__{name} expects {count} argument(s), got {raw!r}")
        return args

    def replace(match: re.Match[str]) -> str:
        name, raw = match.group(1), match.group(2)
        if name == "fromTime":
            return _dt(start)
        if name == "toTime":
            return _dt(end)
        if name == "fromTime_ms":
            return _dt64(start)
        if name == "toTime_ms":
            return _dt64(end)
        if name == "timeFilter":
            (c,) = args_of(name, raw, 1)
            return f"{c} >= {_dt(start)} AND {c} <= {_dt(end)}"
        if name == "timeFilter_ms":
            (c,) = args_of(name, raw, 1)
            return f"{c} >= {_dt64(start)} AND {c} <= {_dt64(end)}"
        if name == "dateFilter":
            (c,) = args_of(name, raw, 1)
            return f"{c} >= {_date(start)} AND {c} <= {_date(end)}"
        if name in ("dateTimeFilter", "dt"):
            d, t = args_of(name, raw, 2)
            return (
                f"({d} >= {_date(start)} AND {d} <= {_date(end)}) AND "
                f"({t} >= {_dt(start)} AND {t} <= {_dt(end)})"
            )
        if name == "timeInterval":
            (c,) = args_of(name, raw, 1)
            return f"toStartOfInterval(toDateTime({c}), INTERVAL {seconds} second)"
        if name == "timeInterval_ms":
            (c,) = args_of(name, raw, 1)
            return f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {millis} millisecond)"
        if name == "interval_s":
            return str(seconds)
        raise TemplateError(f"unknown macro $__{name}")

    return _MACRO.sub(replace, sql)


def render(sql: str, time_range: TimeRange, variables: dict[str, str | list[str]] | None = None) -> str:
    """Variables first (Grafana), then macros (the plugin): the SQL ClickHouse receives."""
    return expand_macros(interpolate(sql, variables or {}), time_range)
