"""MkDocs hooks for the documentation site (mkdocs.yml `hooks:`).

Two pages are generated at build time from files that stay the single source of their content:

- `index.md` is the repository's README.md, its `docs/...` links rewritten to be relative to docs/;
- `reference/http-api.md` is rendered from openapi.yaml: one section per endpoint, then one per
  schema, as plain Markdown. No network is needed to build or to read it (no Swagger or Redoc from
  a CDN), and strict mode checks the links it contains like any other page's.

A page opts in by holding a marker line; everything else on the page is kept around the marker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
README_MARKER = "<!-- include: README.md -->"
OPENAPI_MARKER = "<!-- generated: openapi.yaml -->"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if README_MARKER in markdown:
        markdown = markdown.replace(README_MARKER, readme_for_site((ROOT / "README.md").read_text()))
    if OPENAPI_MARKER in markdown:
        spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
        markdown = markdown.replace(OPENAPI_MARKER, render_openapi(spec))
    return markdown


def readme_for_site(text: str) -> str:
    """The README as a page of the site: links into docs/ become relative to docs/ itself."""
    return re.sub(r"\]\(docs/", "](", text)


# ---------------------------------------------------------------- openapi.yaml as Markdown


def render_openapi(spec: dict[str, Any]) -> str:
    parts: list[str] = []
    info = spec.get("info", {})
    if info.get("description"):
        parts.append(info["description"].strip() + "\n")
    parts.append(_security_intro(spec))
    parts.append("## Endpoints\n")
    parts.append("| method | path | summary |\n| --- | --- | --- |")
    operations = list(_operations(spec))
    for method, path, operation, _ in operations:
        anchor = _slug(f"{method} {path}")
        parts.append(
            f"| `{method.upper()}` | [`{path}`](#{anchor}) | {_cell(operation.get('summary', ''))} |"
        )
    parts.append("")
    for method, path, operation, shared_parameters in operations:
        parts.append(_render_operation(spec, method, path, operation, shared_parameters))
    parts.append("## Schemas\n")
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        parts.append(f"### {name}\n")
        parts.append(_render_schema_block(schema))
    return "\n".join(parts) + "\n"


def _security_intro(spec: dict[str, Any]) -> str:
    schemes = spec.get("components", {}).get("securitySchemes", {})
    lines = []
    for name, scheme in schemes.items():
        if scheme.get("type") == "apiKey":
            lines.append(
                f"Authentication (`{name}`): an API Gateway API key in the `{scheme['name']}` "
                f"{scheme['in']}, on every endpoint unless its section says otherwise.\n"
            )
    return "\n".join(lines)


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any], list[Any]]]:
    for path, item in spec.get("paths", {}).items():
        shared = item.get("parameters", [])
        for method in METHODS:
            if method in item:
                yield method, path, item[method], shared


def _render_operation(
    spec: dict[str, Any], method: str, path: str, operation: dict[str, Any], shared: list[Any]
) -> str:
    out = [f"## {method.upper()} {path}\n"]
    if operation.get("summary"):
        out.append(operation["summary"].strip() + "\n")
    if operation.get("description"):
        out.append(operation["description"].strip() + "\n")
    meta = [f"operation id `{operation.get('operationId', '')}`"]
    if operation.get("security") == []:
        meta.append("no API key")
    out.append("*" + "; ".join(meta) + "*\n")
    parameters = [_resolve(spec, p) for p in [*shared, *operation.get("parameters", [])]]
    if parameters:
        out.append("**Parameters**\n")
        out.append("| name | in | type | required | notes |\n| --- | --- | --- | --- | --- |")
        for parameter in parameters:
            schema = parameter.get("schema", {})
            out.append(
                f"| `{parameter['name']}` | {parameter['in']} | {_cell(_type(schema))} | "
                f"{'yes' if parameter.get('required') else 'no'} | "
                f"{_cell(_notes(schema, parameter.get('description')))} |"
            )
        out.append("")
    body = operation.get("requestBody")
    if body:
        body = _resolve(spec, body)
        required = "required" if body.get("required") else "optional"
        for media, content in body.get("content", {}).items():
            out.append(f"**Request body** ({required}, `{media}`): {_type(content.get('schema', {}))}\n")
            out.append(_render_inline_object(content.get("schema", {})))
    out.append("**Responses**\n")
    out.append("| status | meaning | body |\n| --- | --- | --- |")
    inline: list[tuple[str, dict[str, Any]]] = []
    # Statuses answered alike (the shared error response) share one row.
    rows: dict[tuple[str, str], list[str]] = {}
    for status, response in operation.get("responses", {}).items():
        resolved = _resolve(spec, response)
        bodies = []
        for media, content in resolved.get("content", {}).items():
            schema = content.get("schema", {})
            bodies.append(f"`{media}` {_type(schema)}")
            if "$ref" not in schema and schema.get("properties"):
                inline.append((str(status), schema))
        rows.setdefault((_cell(resolved.get("description", "")), _cell("; ".join(bodies) or "-")), []).append(
            str(status)
        )
    for (meaning, body_text), statuses in rows.items():
        out.append(f"| {', '.join(statuses)} | {meaning} | {body_text} |")
    out.append("")
    for label, schema in inline:
        out.append(f"Response {label}:\n")
        out.append(_render_inline_object(schema))
    return "\n".join(out) + "\n"


def _render_schema_block(schema: dict[str, Any]) -> str:
    lines = []
    if schema.get("description"):
        lines.append(schema["description"].strip() + "\n")
    if schema.get("properties"):
        lines.append(_properties_table(schema))
    else:
        lines.append(f"{_type(schema)}{_suffix(_notes(schema))}\n")
    return "\n".join(lines) + "\n"


def _render_inline_object(schema: dict[str, Any]) -> str:
    if "$ref" in schema or not schema.get("properties"):
        return ""
    return _properties_table(schema) + "\n"


def _properties_table(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = ["| field | type | required | notes |", "| --- | --- | --- | --- |"]
    for name, prop in schema.get("properties", {}).items():
        rows.append(
            f"| `{name}` | {_cell(_type(prop))} | {'yes' if name in required else 'no'} | "
            f"{_cell(_notes(prop, prop.get('description')))} |"
        )
        if "$ref" not in prop and prop.get("properties"):
            for sub, subprop in prop["properties"].items():
                rows.append(
                    f"| `{name}.{sub}` | {_cell(_type(subprop))} | "
                    f"{'yes' if sub in set(prop.get('required', [])) else 'no'} | "
                    f"{_cell(_notes(subprop, subprop.get('description')))} |"
                )
    if schema.get("additionalProperties") is False:
        rows.append("")
        rows.append("No other field is accepted.")
    return "\n".join(rows) + "\n"


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = _ref_name(schema)
        return f"[{name}](#{_slug(name)})"
    if "oneOf" in schema or "anyOf" in schema:
        return " or ".join(_type(s) for s in schema.get("oneOf", schema.get("anyOf", [])))
    if "const" in schema:
        return f"`{_literal(schema['const'])}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{_literal(v)}`" for v in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(_type({**schema, "type": k}) for k in kind)
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {_type(schema['additionalProperties'])}"
    if kind:
        return f"{kind}" + (f" ({schema['format']})" if schema.get("format") else "")
    return "any"


def _notes(schema: dict[str, Any], description: str | None = None) -> str:
    notes = []
    if description:
        notes.append(description.strip())
    for key, label in (
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minimum", "min"),
        ("maximum", "max"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
    ):
        if key in schema:
            notes.append(f"{label} {schema[key]}")
    if "pattern" in schema:
        notes.append(f"pattern `{schema['pattern']}`")
    return "; ".join(notes)


def _suffix(text: str) -> str:
    return f" ({text})" if text else ""


def _literal(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return str(value)


def _cell(text: str) -> str:
    """Table cells stay on one line (a pipe inside a code span does not split the cell)."""
    return " ".join(str(text).split())


def _ref_name(node: dict[str, Any]) -> str:
    return str(node.get("$ref", "")).rsplit("/", 1)[-1]


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _slug(text: str) -> str:
    """The anchor MkDocs' default `toc` slugify gives a heading of this text."""
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)
