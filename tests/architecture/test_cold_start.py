"""What a handler's init phase loads: Powertools, the composition root and the HTTP mapping, nothing
that only a request needs. pydantic, the YAML parser, boto3, Stripe and clickhouse-connect load on a
handler's first request, inside the route or the provider that needs them (bench/import_time.py
measures what that saves)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

FUNCTIONS = sorted(p.parent.name for p in (PROJECT_ROOT / "functions").glob("*/app.py"))
DEFERRED = ("pydantic", "pydantic_core", "yaml", "boto3", "stripe", "clickhouse_connect")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_handler_imports_nothing_its_first_request_can_import(function: str) -> None:
    # Given a fresh interpreter whose path is the function's code and the layer, as in Lambda
    code = (
        "import sys\n"
        f"sys.path[:0] = [{str(PROJECT_ROOT / 'functions' / function)!r}, {str(PROJECT_ROOT / 'layers/billing')!r}]\n"
        "import app\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({DEFERRED!r})))\n"
    )
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": "1", "AWS_DEFAULT_REGION": "us-east-1"}
    # When the handler module is imported (Lambda's init phase)
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, env=env, check=True
    )
    # Then none of the libraries a request needs is loaded yet, and no settings were read
    assert done.stdout.strip() == "[]"
