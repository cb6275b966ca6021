"""``python -m benchmarks startup``: how long the ``arcuate`` command and ``import arcuate`` take
to start, and which heavy libraries each one loads.

Each case runs in a fresh interpreter (``--repeat`` times; the best and median wall times are
printed, and the best CPU time, user plus system, which other jobs on the machine disturb
less), then once more to list the :data:`HEAVY` modules it left in ``sys.modules``. The CLI
cases call the command's entry point in that interpreter, exactly as the ``arcuate`` script
does. ``arcuate --help`` and ``arcuate explain`` must load none of them: MLflow and the server
stack cost about a second between them, and neither command uses them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

#: Libraries that take tens to hundreds of milliseconds to import, and that neither
#: ``arcuate --help`` nor ``arcuate explain`` needs.
HEAVY: Final = (
    "mlflow",
    "starlette",
    "uvicorn",
    "pyarrow",
    "yaml",
    "deltalake",
    "delta_sharing",
    "pandas",
    "numpy",
    "pyspark",
    # the database and object-store clients and what a signature check needs: a tiny export
    # or import loads only those its step uses (tests/imports/test_startup_*.py)
    "sqlalchemy",
    "psycopg",
    "boto3",
    "botocore",
    "requests",
    "cryptography",
)

STATEMENT: Final = "CREATE MODEL m AS 'p#a.b.c'"

#: name -> the Python code one case runs (the CLI cases call the console script's target).
CASES: Final = {
    "arcuate --help": "from arcuate.frontends.cli import main; main(['--help'])",
    "arcuate explain": f"from arcuate.frontends.cli import main; main(['explain', {STATEMENT!r}])",
    "import arcuate": "import arcuate",
}

_REPORT: Final = (
    "\nimport json, sys\n"
    "sys.stdout.flush()\n"
    f"sys.stderr.write(json.dumps([m for m in {HEAVY!r} if m in sys.modules]) + '\\n')\n"
)


def _wrapped(code: str) -> str:
    """``code``, then (even when it exits, as click does) the heavy modules it loaded."""
    return f"try:\n    {code}\nexcept SystemExit:\n    pass\n{_REPORT}"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def heavy_modules(code: str) -> list[str]:
    """The :data:`HEAVY` modules loaded by running ``code`` in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", _wrapped(code)],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
        timeout=120,
    )
    loaded: list[str] = json.loads(proc.stderr.strip().splitlines()[-1])
    return loaded


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timings(code: str, repeat: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of ``repeat`` fresh interpreters running ``code``, interpreter
    start included."""
    times = []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), _cpu()
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            env=_env(),
            check=False,
            timeout=120,
        )
        times.append((time.perf_counter() - start, _cpu() - cpu))
    return times


def _line(name: str, times: list[tuple[float, float]]) -> str:
    wall = [w for w, _ in times]
    return (
        f"  {name:<16} {min(wall):6.3f} s  (median {statistics.median(wall):.3f} s, "
        f"CPU {min(c for _, c in times):.3f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks startup", description=__doc__)
    ap.add_argument("--repeat", type=int, default=5, help="fresh interpreters per case (5)")
    args = ap.parse_args(argv)
    print(f"start-up: best wall time of {args.repeat} fresh interpreters (median, best CPU)")
    print(_line("python -c pass", timings("pass", args.repeat)))
    failed = False
    for case, code in CASES.items():
        times = timings(code, args.repeat)
        loaded = heavy_modules(code)
        failed = failed or (case != "import arcuate" and bool(loaded))
        print(_line(case, times) + f"  heavy modules: {', '.join(loaded) or 'none'}")
    return 1 if failed else 0


__all__ = ["CASES", "HEAVY", "heavy_modules", "main", "timings"]
