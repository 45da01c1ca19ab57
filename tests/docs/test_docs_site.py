"""The documentation site: every page is in the navigation, and `mkdocs build --strict` passes
(so a broken link or anchor fails); strict mode also refuses a page left out of the navigation."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="mkdocs and mkdocs-material are not installed (the dev extra: pip install -e '.[dev]')",
)


class _ConfigLoader(yaml.SafeLoader):
    """mkdocs.yml names Python objects (`!!python/name:`); reading the nav needs none of them."""


_ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def nav_pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    # Not --quiet: it hides the warnings that strict mode counts, and the build would pass.
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_every_docs_page_is_in_the_navigation_once():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_ConfigLoader)  # noqa: S506 - the SafeLoader
    pages = nav_pages(config["nav"])
    on_disk = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md"))
    assert sorted(pages) == on_disk
    assert len(pages) == len(set(pages))


@needs_mkdocs
def test_mkdocs_build_strict_passes(tmp_path):
    run = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert run.returncode == 0, run.stdout + run.stderr
    # The generated pages are there: the README as the home page, the API from openapi.yaml.
    home = (tmp_path / "site" / "index.html").read_text()
    assert "Ten-minute quickstart" in home
    api = (tmp_path / "site" / "reference" / "http-api" / "index.html").read_text()
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    for path, item in spec["paths"].items():
        for method in item:
            if method in ("get", "post", "put", "delete", "patch"):
                assert f"{method.upper()} {path}" in api


@needs_mkdocs
@pytest.mark.parametrize(
    "change",
    ["a page missing from the navigation", "a link to a missing anchor", "a link to a missing page"],
)
def test_mkdocs_build_strict_fails_on_a_broken_docs_tree(tmp_path, change):
    # Given a copy of the docs with one defect
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    if change == "a page missing from the navigation":
        (docs / "orphan.md").write_text("# Orphan\n")
    elif change == "a link to a missing anchor":
        with (docs / "concepts" / "index.md").open("a") as page:
            page.write("\n[gone](metering.md#no-such-section)\n")
    else:
        with (docs / "concepts" / "index.md").open("a") as page:
            page.write("\n[gone](no-such-page.md)\n")
    text = (ROOT / "mkdocs.yml").read_text()
    text = text.replace("docs_dir: docs", f"docs_dir: {docs}")
    text = text.replace(
        "  - docs_hooks/generated_pages.py", f"  - {ROOT / 'docs_hooks' / 'generated_pages.py'}"
    )
    config = tmp_path / "mkdocs.yml"
    config.write_text(text)

    # When the site is built in strict mode
    run = build(config, tmp_path / "site")

    # Then the build fails and says why
    assert run.returncode != 0
    assert "strict mode" in run.stdout + run.stderr
