"""YAML that refuses duplicate mapping keys, at any level.

A YAML mapping that names a key twice is valid to PyYAML (and to schemathesis and API Gateway's
importers): the last one silently wins. In openapi.yaml that makes a schema the reader sees not the
schema that is checked, so the contract is loaded with this loader and ``make lint`` runs it:

    python -m billing_local.yaml_lint openapi.yaml
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode

_MERGE = "tag:yaml.org,2002:merge"


class DuplicateKeyError(ValueError):
    """A document whose mappings repeat a key; ``problems`` names each repeat and where."""

    def __init__(self, source: str, problems: list[str]):
        super().__init__(f"{source}: duplicate mapping key(s):\n  " + "\n  ".join(problems))
        self.problems = problems


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that notes every repeated key of a mapping (all of them, not only the first)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        first_line: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:  # "<<" merges are overrides by design
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # SafeLoader itself refuses an unhashable key, with its own message
            line = key_node.start_mark.line + 1
            if key in first_line:
                self.duplicates.append(f"line {line}: key {key!r} repeats the one at line {first_line[key]}")
            else:
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def load_unique(text: str, source: str = "<yaml>") -> Any:
    """The document ``text`` holds, or DuplicateKeyError naming every key a mapping repeats."""
    loader = _UniqueKeyLoader(text)
    try:
        document = loader.get_single_data()
    finally:
        loader.dispose()
    if loader.duplicates:
        raise DuplicateKeyError(source, loader.duplicates)
    return document


def main(paths: list[str]) -> int:
    failed = False
    for path in paths:
        try:
            load_unique(Path(path).read_text(), path)
        except (DuplicateKeyError, yaml.YAMLError) as exc:
            print(exc, file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
