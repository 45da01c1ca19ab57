"""The README's quickstart works as written: its marked blocks run, unchanged, against `billing serve`
started on a fresh data directory and a free port (the README's `BILLING` and `KEY` point at it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from billing_local.serve_process import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
KEY = "quickstart-platform-key"
MARKER = "<!-- quickstart:"


def quickstart_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block right after a quickstart marker line, in order."""
    blocks = []
    for match in re.finditer(r"^<!-- quickstart:[^\n]*-->\n```(\w+)\n(.*?)^```$", text, re.M | re.S):
        blocks.append((match.group(1), match.group(2)))
    return blocks


def test_the_readme_marks_a_shell_and_a_python_quickstart_block():
    text = (ROOT / "README.md").read_text()
    blocks = quickstart_blocks(text)
    # Every marker is followed by a block (a marker left above prose would be silently skipped).
    assert len(blocks) == text.count(MARKER)
    assert [language for language, _ in blocks] == ["sh", "python"]
    # Each curl fails on a non-2xx answer, so the shell block succeeding means every request did.
    curls = re.findall(r"\bcurl\b[^\n]*", blocks[0][1])
    assert len(curls) == 6
    assert all(" -fsS " in line for line in curls), curls


def test_the_readme_quickstart_runs_as_written_against_billing_serve(tmp_path):
    (shell_language, shell), (_, python) = quickstart_blocks((ROOT / "README.md").read_text())
    server = ServeProcess(tmp_path / "data", KEY, cwd=ROOT)
    try:
        environment = {**os.environ, "BILLING": server.url, "KEY": KEY}
        work = tmp_path / "work"
        work.mkdir()

        # When the shell block runs as written, stopping at the first failing command
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", shell],
            cwd=work,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )

        # Then every command succeeded (every curl answered 2xx)
        assert run.returncode == 0, run.stdout + run.stderr
        answers = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        tenant, ingest, quota, preview = answers
        month = datetime.now(UTC).strftime("%Y-%m")
        assert tenant["id"] == "acme" and tenant["plans"] == [
            {"plan": "pro", "effective_at": f"{month}-01T00:00:00Z"}
        ]
        assert ingest == {
            "status": "stored",
            "accepted": 3,
            "duplicates": [],
            "rejected_for_quota": [],
            "queued": False,
        }
        assert (quota["used"], quota["limit"]) == (2, 100000)
        # And the preview shows the events: the base fee, the two queries, the three events' cost
        statement = preview["statement"]
        assert preview["preview"] is True and statement["month"] == month
        assert statement["total_queries"] == 2 and statement["total_tokens"] == 2450
        lines = {line["kind"]: line for line in statement["lines"]}
        assert lines["base_fee"]["amount"] == "99.00"
        assert lines["queries"]["quantity"] == "2"
        assert lines["usage_cost"]["quantity"] == "3"
        # And the usage page link opens: its URL, then the page itself as HTML
        link, page = run.stdout.strip().splitlines()[-2:]
        assert link.startswith(f"{server.url}/v1/portal?token=")
        assert page.startswith("200 text/html")

        # When the tracker snippet runs as written
        snippet = subprocess.run(
            [sys.executable, "-c", python],
            cwd=work,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

        # Then it delivered its two queries: the preview now bills four
        assert snippet.returncode == 0, snippet.stdout + snippet.stderr
        status, again = server.call("GET", f"/v1/tenants/acme/statements/{month}")
        assert status == 200, again
        assert again["statement"]["total_queries"] == 4
    finally:
        assert server.stop() == 0
