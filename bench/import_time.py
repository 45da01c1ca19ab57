"""Cold import time of every Lambda handler module (functions/*/app.py), as a Lambda init would pay it.

    python bench/import_time.py            # 5 fresh interpreters per handler
    python bench/import_time.py --runs 10

Each run is a fresh ``python`` subprocess (plus one ``-X importtime`` run for the breakdown) in which chdb and moto cannot be imported
(a meta path blocker installed before anything else), so a handler that pulls in the local runtime
fails loudly instead of looking fast. The figure is the wall time of executing app.py (all its
imports and module-level setup), interpreter start-up excluded. Target: < 300 ms each.
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("chdb", "moto")
TARGET_MS = 300

PROBE = r"""
import sys, time, importlib.abc, importlib.util

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"{{name}} is blocked: a Lambda handler must not import it", name=name)
        return None

sys.meta_path.insert(0, _Block())
sys.path.insert(0, {function_dir!r})
start, cpu = time.perf_counter(), time.process_time()
spec = importlib.util.spec_from_file_location("app", {app!r})
module = importlib.util.module_from_spec(spec)
sys.modules["app"] = module
spec.loader.exec_module(module)
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
assert callable(getattr(module, "handler", None)), "no handler"
print(f"IMPORT_SECONDS={{elapsed:.6f}} CPU_SECONDS={{cpu:.6f}}")
"""

_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)$")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="fresh interpreters per handler (default 5)")
    p.add_argument("--top", type=int, default=3, help="heaviest top-level imports to name (default 3)")
    return p.parse_args(argv)


def probe(app: Path, importtime: bool = False) -> tuple[float, float, dict[str, int]]:
    """(wall s, CPU s, {top-level module: cumulative µs} with -X importtime) of one fresh import."""
    code = PROBE.format(blocked=BLOCKED, function_dir=str(app.parent), app=str(app))
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    flags = ["-X", "importtime"] if importtime else []
    done = subprocess.run(
        [sys.executable, *flags, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"
        raise RuntimeError(f"{app.relative_to(ROOT)} failed to import: {tail}")
    seconds = float(re.search(r"IMPORT_SECONDS=([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    cpu = float(re.search(r"CPU_SECONDS=([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    top: dict[str, int] = {}
    for line in done.stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match and len(match.group(3)) == 1:  # depth 0: imported directly by the probe / app.py chain
            top[match.group(4)] = top.get(match.group(4), 0) + int(match.group(2))
    return seconds, cpu, top


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apps = sorted((ROOT / "functions").glob("*/app.py"))
    print(
        f"{len(apps)} handler modules; {args.runs} fresh interpreters each; blocked: {', '.join(BLOCKED)}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        f"{'function':<22} {'min ms':>7} {'median ms':>10} {'max ms':>7} {'CPU ms':>7}  {'verdict':<7} "
        "heaviest imports (cumulative ms, one -X importtime run)"
    )
    failures = 0
    for app in apps:
        name = app.parent.name
        try:
            samples = [probe(app) for _ in range(args.runs)]
            detail = probe(app, importtime=True)
        except RuntimeError as exc:
            failures += 1
            print(f"{name:<22} {'-':>7} {'-':>10} {'-':>7} {'-':>7}  {'FAILED':<7} {exc}")
            continue
        times = sorted(s[0] * 1000 for s in samples)
        median = statistics.median(times)
        cpu = statistics.median(s[1] * 1000 for s in samples)
        heavy = sorted(detail[2].items(), key=lambda kv: -kv[1])
        heavy = [(m, us) for m, us in heavy if m not in ("encodings", "site")][: args.top]
        verdict = "OK" if median < TARGET_MS else "SLOW"
        print(
            f"{name:<22} {times[0]:7.0f} {median:10.0f} {times[-1]:7.0f} {cpu:7.0f}  {verdict:<7} "
            + ", ".join(f"{m} {us / 1000:.0f}" for m, us in heavy)
        )
    print(
        f"\ntarget < {TARGET_MS} ms median per handler (interpreter start-up excluded; warm file cache). "
        "CPU ms is the\nimporting process's CPU time: on a loaded machine it is closer to a quiet machine's wall time."
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
