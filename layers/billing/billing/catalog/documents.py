"""The configuration documents (the plan catalog, the price book) as parsed data.

A YAML file is read from the compact JSON form the layer's build writes next to it
(``plans.yaml`` -> ``plans.yaml.json``, ``python -m billing.catalog.documents DIR``) when that form
was made from this very text (its SHA-256 is stored with it), else parsed as YAML. The compact form
spares a cold start the YAML parser (imported and run in pure Python); the hash makes a stale or
edited compact form impossible to use.

Invariants: ``load_document(path) == yaml.safe_load(path.read_text())`` for every file; a compact
form is written only for a parse JSON holds exactly (string keys, strings, integers, finite floats,
booleans, null, lists, mappings): anything else (a YAML date, say) stays YAML.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

COMPACT_SUFFIX = ".json"


def compact_path(path: Path) -> Path:
    return path.with_name(path.name + COMPACT_SUFFIX)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def load_document(path: Path | str) -> Any:
    """The parse of the YAML file at ``path``, from its compact form when that form is this text's."""
    path = Path(path)
    text = path.read_text()
    compact = compact_path(path)
    if compact.is_file():
        stored = json.loads(compact.read_text())
        if isinstance(stored, dict) and stored.get("sha256") == _digest(text):
            return stored["document"]
    import yaml  # only when no compact form of this text exists (local runs, a PLANS_PATH of one's own)

    return yaml.safe_load(text)


def json_exact(value: Any) -> bool:
    """True when JSON gives back exactly ``value`` (same types, same values)."""
    if value is None or type(value) in (str, int, bool):
        return True
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is list:
        return all(json_exact(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and json_exact(v) for k, v in value.items())
    return False


def compile_document(path: Path) -> Path | None:
    """Write the compact form of the YAML file at ``path``; None (and nothing written) when its parse
    is not JSON's exactly."""
    import yaml

    text = path.read_text()
    document = yaml.safe_load(text)
    if not json_exact(document):
        compact_path(path).unlink(missing_ok=True)
        return None
    target = compact_path(path)
    target.write_text(json.dumps({"sha256": _digest(text), "document": document}, separators=(",", ":")))
    return target


def main(argv: list[str]) -> int:
    """Compact form of every ``*.yaml`` in the folders named (the layer build's step)."""
    for folder in argv:
        for path in sorted(Path(folder).glob("*.yaml")):
            written = compile_document(path)
            print(
                f"{path.name}: " + (f"-> {written.name}" if written else "kept as YAML (not plain JSON data)")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
