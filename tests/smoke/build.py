"""Build what ships: ``sam build`` of template.yaml when the SAM CLI and the template's Python are on
this machine, else the layer the way SAM builds it (same recipe, this interpreter).

The only change made to the template for a build here is the architecture: binary wheels are
taken for this machine's CPU (the template ships arm64; pydantic-core and friends for arm64 do not
load on x86_64). Code, requirements, build methods and the layer recipe are the template's own.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from billing_local.template import PROJECT_ROOT, load_template, resources_of_type

LAYER_ID = "BillingLayer"


@dataclass(frozen=True)
class Artifacts:
    """A build: one folder per function (its code) and the layer's ``python/`` folder (/opt/python)."""

    how: str
    python: Path  # the interpreter the functions run on (the template's runtime when found)
    root: Path

    def code_dir(self, logical_id: str) -> Path:
        return self.root / logical_id

    @property
    def layer_dir(self) -> Path:
        return self.root / LAYER_ID / "python"

    @property
    def python_tag(self) -> str:
        """The bytecode cache tag of the functions' interpreter (cpython-313 for python3.13)."""
        return subprocess.run(
            [str(self.python), "-c", "import sys; print(sys.implementation.cache_tag)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()


def host_architecture() -> str:
    return "arm64" if platform.machine().lower() in ("arm64", "aarch64") else "x86_64"


def runtime_version(template: dict[str, Any]) -> str:
    """'3.13' for python3.13: the Globals runtime every function inherits."""
    match = re.fullmatch(r"python(\d+\.\d+)", template["Globals"]["Function"]["Runtime"])
    assert match, template["Globals"]["Function"]["Runtime"]
    return match.group(1)


def _python_version(python: Path | str) -> str | None:
    try:
        out = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def find_python(version: str) -> Path | None:
    """python<version> on PATH, else a pyenv-installed one (pyenv's shim alone runs only the
    globally selected version), else None."""
    candidates: list[Path] = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(Path(on_path))
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        candidates += sorted(Path(root).glob(f"versions/{version}.*/bin/python{version}"), reverse=True)
        candidates += sorted(Path(root).glob(f"versions/{version}/bin/python{version}"))
    for candidate in candidates:
        if _python_version(candidate) == version:
            return candidate
    return None


def sam_cli() -> Path | None:
    sam = Path(sys.executable).parent / "sam"
    return sam if sam.exists() else (Path(found) if (found := shutil.which("sam")) else None)


def _absolute_paths(template: dict[str, Any], architecture: str) -> dict[str, Any]:
    """The template with code paths made absolute (it is built from another folder) and the
    architecture of this machine."""
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = str(PROJECT_ROOT / props[key])
        if resource["Type"] == "AWS::Serverless::Function" and "Architectures" in props:
            props["Architectures"] = [architecture]
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            props["CompatibleArchitectures"] = [architecture]
            if "BuildArchitecture" in resource.get("Metadata", {}):
                resource["Metadata"]["BuildArchitecture"] = architecture
    template["Globals"]["Function"]["Architectures"] = [architecture]
    return template


def sam_build(out: Path, python: Path, sam: Path) -> Artifacts:
    architecture = host_architecture()
    out.mkdir(parents=True, exist_ok=True)
    template_file = out / "template.json"
    template_file.write_text(json.dumps(_absolute_paths(load_template(), architecture), indent=1))
    env = {
        **os.environ,
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SAM_CLI_TELEMETRY": "0",
        "LAYER_ARCH": architecture,
        "PYTHON": str(python),
    }
    env.pop("PYTHONPATH", None)
    command = [
        str(sam),
        "build",
        "--template-file",
        str(template_file),
        "--build-dir",
        str(out / "build"),
        "--cached",
        "--cache-dir",
        str(out / "cache"),
        "--parallel",
    ]
    done = subprocess.run(command, cwd=out, env=env, capture_output=True, text=True, timeout=900)
    (out / "sam-build.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(
            f"sam build failed (log: {out / 'sam-build.log'}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    how = f"sam build ({python.name}, {architecture}" + (
        ")" if architecture == "arm64" else "; template: arm64)"
    )
    return Artifacts(how=how, python=python, root=out / "build")


def layer_like_sam(out: Path, python: Path) -> Path:
    """The layer as ``sam build`` builds it: a ``makefile`` layer runs its build target with
    ARTIFACTS_DIR; a ``python3.x`` one gets its requirements installed into python/, then the
    package folder copied next to them (symbolic links followed)."""
    template = load_template()
    layer_root = out / "build" / LAYER_ID
    shutil.rmtree(layer_root, ignore_errors=True)
    layer_root.mkdir(parents=True)
    source = PROJECT_ROOT / template["Resources"][LAYER_ID]["Properties"]["ContentUri"]
    if template["Resources"][LAYER_ID].get("Metadata", {}).get("BuildMethod") == "makefile":
        subprocess.run(
            [
                "make",
                "--no-print-directory",
                "-C",
                str(source),
                f"build-{LAYER_ID}",
                f"ARTIFACTS_DIR={layer_root}",
                f"PYTHON={python}",
                f"LAYER_ARCH={host_architecture()}",
            ],
            check=True,
            capture_output=True,
        )
        return layer_root / "python"
    layer = layer_root / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "-r",
            str(source / "requirements.txt"),
            "-t",
            str(layer),
        ],
        check=True,
    )
    for entry in source.iterdir():
        target = layer / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(entry, target)
    return layer


def fallback_build(out: Path, python: Path, reason: str) -> Artifacts:
    template = load_template()
    layer_like_sam(out, python)
    for logical_id, resource in resources_of_type(template, "AWS::Serverless::Function").items():
        target = out / "build" / logical_id
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            PROJECT_ROOT / resource["Properties"]["CodeUri"],
            target,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    recipe = (
        "make build-BillingLayer"
        if template["Resources"][LAYER_ID].get("Metadata", {}).get("BuildMethod") == "makefile"
        else "layer built like SAM"
    )
    return Artifacts(
        how=f"{recipe}, python {_python_version(python)} ({reason})", python=python, root=out / "build"
    )


def build(out: Path) -> Artifacts:
    """``sam build`` when possible; otherwise the SAM recipe by hand, and the reason why
    (``SMOKE_BUILD=like-sam`` forces the latter)."""
    version = runtime_version(load_template())
    python = find_python(version)
    sam = sam_cli()
    if python and sam and os.environ.get("SMOKE_BUILD") != "like-sam":
        return sam_build(out, python, sam)
    reason = (
        "SMOKE_BUILD=like-sam"
        if os.environ.get("SMOKE_BUILD") == "like-sam"
        else "no SAM CLI"
        if python
        else f"no python{version} on this machine"
    )
    return fallback_build(out, Path(sys.executable), reason)
