"""template.yaml as CloudFormation runs it: packaged (code paths become S3 URIs, as `sam package`
does) and translated by aws-sam-translator, so tests read the roles, event source mappings and
alarms SAM actually generates. Also cfn-lint, run as its command line (it has no ``python -m``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from billing_local.template import load_template

SAM_POLICY_TEMPLATES_ALLOWED: tuple[str, ...] = ()  # every function states its exact actions


class _NoManagedPolicies:
    def load(self) -> dict:
        return {}


@lru_cache(maxsize=1)
def _translated_json() -> str:
    from samtranslator.translator.transform import transform

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = load_template()
    for resource in template["Resources"].values():
        for key in ("CodeUri", "ContentUri"):
            if isinstance(resource.get("Properties", {}).get(key), str):
                resource["Properties"][key] = f"s3://artifacts/{resource['Properties'][key]}.zip"
    return json.dumps(
        transform(template, {"Environment": "dev"}, _NoManagedPolicies()), indent=1, default=str
    )


def translated() -> dict[str, Any]:
    return json.loads(_translated_json())


def write_translated(path: Path) -> Path:
    path.write_text(_translated_json())
    return path


def role_statements(template: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    """The inline policy statements of a function's generated role."""
    role = template["Resources"][template["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]]
    return [
        statement
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def cfn_lint(path: Path, *, informational: bool = False) -> list[dict[str, Any]]:
    """cfn-lint's findings (JSON); fails when cfn-lint itself did not run."""
    command = [str(Path(sys.executable).with_name("cfn-lint")), "--format", "json"]
    if informational:
        command += ["--include-checks", "I"]
    done = subprocess.run([command[0], str(path), *command[1:]], capture_output=True, text=True)
    assert done.returncode in (0, 2, 4, 6, 8, 10, 12, 14) and done.stdout.strip().startswith("["), (
        f"cfn-lint did not run: exit {done.returncode}: {done.stderr[-2000:]}"
    )
    return json.loads(done.stdout)
