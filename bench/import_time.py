"""Cold import of every handler as shipped, next to a minimal Powertools handler, in the same run.

    python bench/import_time.py            # 7 rounds
    python bench/import_time.py --runs 15 --importtime

What runs is what deploys: the functions and the layer from ``sam build`` (the deploy smoke test's
build, tests/smoke/build.py: bytecode included; without SAM CLI or python3.13 the layer's own make
target), each import in a fresh ``python3.13 -I -S -B`` whose path is only the function's code and
the layer, with the Lambda runtime's variables and the template's environment (tracing active, so
Powertools' Tracer patches what it patches in Lambda). Nothing but imports runs: no AWS is called.

The baseline is the smallest handler a Powertools team would write: Logger, Tracer, Metrics and an
APIGatewayRestResolver with one route, from the same layer, in the same interpreter flags and
environment. Rounds interleave baseline and handlers so a busy machine slows both alike; the ratio
is handler median / baseline median, of CPU time (steadier under load) and of wall time.
Goal: every handler <= 1.2x the baseline. Prints figures only; nothing is asserted.

Handlers import what a request needs inside the route (pydantic, the settings, the domain): the
"1st request" column is the CPU time of those imports (the modules the handler's functions import,
and the settings), timed in the same process right after the init phase, so the cost moved out of
init is shown, not hidden. The services the container builds on a request come on top of it.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from billing_local.template import load_template, resources_of_type  # noqa: E402
from tests.smoke.build import build  # noqa: E402
from tests.smoke.stack import Resolver, Stack, function_environment  # noqa: E402

GOAL = 1.2
BASELINE = """
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

logger = Logger(service="baseline")
tracer = Tracer(service="baseline")
metrics = Metrics(namespace="Baseline", service="baseline")
app = APIGatewayRestResolver()


@app.get("/ping")
@tracer.capture_method
def ping() -> dict:
    return {"ok": True}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return app.resolve(event, context)
"""

PROBE = r"""
import sys, time, importlib
sys.path[:0] = [{code!r}, {layer!r}]
wall, cpu = time.perf_counter(), time.process_time()
module = importlib.import_module("app")
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
assert callable(getattr(module, "handler", None)), "no handler"
top = sorted({{m.split(".")[0] for m in sys.modules}})
later = time.process_time()
for name in {later!r}:
    importlib.import_module(name)
later = time.process_time() - later
print("RESULT " + repr((wall, cpu, top, later)))
"""
_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)$")


def first_request_modules(code: Path) -> list[str]:
    """What the handler imports inside its functions (its routes' and record handlers' own imports),
    and the settings every request reads."""
    if not (code / "app.py").exists():
        return []
    tree = ast.parse((code / "app.py").read_text())
    found = ["billing.runtime.settings"]
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module and inner.module not in found:
                    found.append(inner.module)
    return found


def fake_stack(template: dict) -> Stack:
    """Physical ids shaped like the real ones: the environment is exact in form, nothing is called."""
    stack = Stack(endpoint="http://127.0.0.1:9", prefix="bench")
    for logical_id, resource in template["Resources"].items():
        name = f"bench-{logical_id}"
        arn = f"arn:aws:{resource['Type'].split('::')[1].lower()}:us-east-1:123456789012:{name}"
        stack.physical[logical_id] = {
            "Ref": f"https://sqs.us-east-1.amazonaws.com/123456789012/{name}"
            if resource["Type"] == "AWS::SQS::Queue"
            else arn
            if resource["Type"] == "AWS::SecretsManager::Secret"
            else name,
            "Arn": arn,
            "QueueName": name,
        }
    return stack


def environment(template: dict, logical_id: str | None, stack: Stack) -> dict[str, str]:
    name = f"bench-{logical_id or 'Baseline'}"
    runtime = {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{template['Globals']['Function']['Runtime']}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    if logical_id is None:
        return runtime
    return {**runtime, **function_environment(template, logical_id, Resolver(template, stack, {}))}


def probe(python: Path, code: Path, layer: Path, env: dict[str, str], importtime: bool = False, later=()):
    flags = ["-X", "importtime"] if importtime else []
    script = PROBE.format(code=str(code), layer=str(layer), later=list(later))
    done = subprocess.run(
        [str(python), "-I", "-S", "-B", *flags, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=code,
        timeout=120,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"{code.name}: {done.stderr.strip().splitlines()[-1:] or 'no output'}")
    wall, cpu, top, later_cpu = eval(line[len("RESULT ") :])  # noqa: S307 - our own probe's repr
    heavy: dict[str, int] = {}
    for text in done.stderr.splitlines():
        match = _IMPORTTIME.match(text)
        if match and len(match.group(3)) <= 3:
            root = match.group(4).split(".")[0]
            if len(match.group(3)) == 1 or root not in heavy:
                heavy[root] = max(heavy.get(root, 0), int(match.group(2)))
    return wall * 1000, cpu * 1000, top, heavy, later_cpu * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument(
        "--importtime", action="store_true", help="name the heaviest imports (one -X importtime run)"
    )
    args = parser.parse_args(argv)

    artifacts = build(ROOT / ".aws-sam" / "smoke")
    template = load_template()
    stack = fake_stack(template)
    functions = sorted(resources_of_type(template, "AWS::Serverless::Function"))
    baseline_dir = Path(tempfile.mkdtemp(prefix="baseline-"))
    (baseline_dir / "app.py").write_text(BASELINE)
    subjects = {"(baseline)": (baseline_dir, environment(template, None, stack))}
    for logical_id in functions:
        subjects[logical_id] = (artifacts.code_dir(logical_id), environment(template, logical_id, stack))

    print(f"built: {artifacts.how}; interpreter {artifacts.python}")
    print(
        f"{len(functions)} handlers + baseline; {args.runs} interleaved rounds; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in subjects}
    firsts: dict[str, list[float]] = {name: [] for name in subjects}
    modules: dict[str, list[str]] = {}
    for _ in range(args.runs):
        for name, (code, env) in subjects.items():
            later = first_request_modules(code) if name != "(baseline)" else []
            wall, cpu, top, _heavy, first = probe(
                artifacts.python, code, artifacts.layer_dir, env, later=later
            )
            samples[name].append((wall, cpu))
            firsts[name].append(first)
            modules[name] = top
    base_wall = statistics.median(w for w, _ in samples["(baseline)"])
    base_cpu = statistics.median(c for _, c in samples["(baseline)"])
    print(
        f"{'function':<24} {'wall ms':>8} {'CPU ms':>7} {'x CPU':>6} {'x wall':>7} {'1st req':>7}  verdict  "
        "not in the baseline (top-level packages)"
    )
    worst = 0.0
    for name in subjects:
        wall = statistics.median(w for w, _ in samples[name])
        cpu = statistics.median(c for _, c in samples[name])
        ratio = cpu / base_cpu
        worst = max(worst, ratio) if name != "(baseline)" else worst
        extra = sorted(set(modules[name]) - set(modules["(baseline)"]) - set(sys.builtin_module_names))
        extra = [m for m in extra if not m.startswith("_")]
        verdict = "" if name == "(baseline)" else ("OK" if ratio <= GOAL else "over")
        print(
            f"{name:<24} {wall:8.0f} {cpu:7.0f} {ratio:6.2f} {wall / base_wall:7.2f} "
            f"{statistics.median(firsts[name]):7.0f}  {verdict:<7}  "
            + ", ".join(extra[:12])
            + (" ..." if len(extra) > 12 else "")
        )
    print(
        f"\nworst handler: {worst:.2f}x the baseline's CPU (goal <= {GOAL}x). Import only (Lambda's init phase),"
        " interpreter start-up excluded, warm file cache."
    )
    if args.importtime:
        print("\nheaviest imports, one -X importtime run each (cumulative ms):")
        for name, (code, env) in subjects.items():
            heavy = probe(artifacts.python, code, artifacts.layer_dir, env, importtime=True)[3]
            top = sorted(heavy.items(), key=lambda kv: -kv[1])[:8]
            print(f"  {name:<24} " + ", ".join(f"{m} {us / 1000:.0f}" for m, us in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
