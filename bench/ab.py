"""`make bench-ab BASE=<rev>`: authz of another revision against this checkout's, in one run.

A refactoring must not cost the hot path, and on this small, noisy machine only a comparison
made in one run means anything. So the two are interleaved: each round measures authz
directly (one worker, exact mode, gRPC with h2load and HTTP with wrk) from the base revision
and from this checkout, in alternating order, on one redis-server and with the same key. The
base runs from a git worktree of ``BASE``: on its PYTHONPATH, with PYTHONSAFEPATH set so that
the working directory (this checkout) is not put ahead of it. The editable install's finder
comes after the path, so the worktree's packages are the ones imported (checked before the
run, in the same environment). Reported: the median
checks/s and CPU per check of each, and this checkout's over the base's.

    python bench/ab.py --base REV [--rounds 3] [--seconds 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (
    EXACT_TIER,
    Bench,
    LogFiles,
    Table,
    direct,
    new_stack,
    prepare,
    restart_authz,
)
from bench.probes import cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
MODES = ("grpc", "http")


def measure(b: Bench, mode: str, seconds: int) -> tuple[float, float]:
    """(checks/s, CPU µs per check) of the running authz, after a short warm-up."""
    port = b.stack.ports.authz
    direct(b, mode, port, "exact", 2)  # connections, the script cache, the key's tier
    cpu0 = cpu_seconds([b.pid("authz")])
    d = direct(b, mode, port, "exact", seconds)
    cpu = cpu_seconds([b.pid("authz")]) - cpu0
    return d["rps"], cpu / d["n"] * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", required=True, help="the git revision to compare against")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6)
    args = ap.parse_args()
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        base = tmp / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base),
                        args.base], check=True, capture_output=True)  # fmt: skip

        env = {**os.environ, "PYTHONPATH": str(base), "PYTHONSAFEPATH": "1"}
        where = subprocess.run([sys.executable, "-c", "import authz; print(authz.__file__)"],
                               env=env, cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
        assert where.stdout.strip() == str(base / "authz" / "__init__.py"), where.stdout
        (tmp / "tiers.toml").write_text(EXACT_TIER)  # what every revision reads
        logs = LogFiles(tmp)
        b = Bench(new_stack(tmp, logs, tmp / "tiers.toml"), logs, tmp, args.seconds, Table())
        try:
            prepare(b)
            for r in range(args.rounds):
                order = ("base", "this") if r % 2 == 0 else ("this", "base")
                for variant in order:
                    if variant == "base":
                        b.stack.env.update(PYTHONPATH=str(base), PYTHONSAFEPATH="1")
                    else:
                        for name in ("PYTHONPATH", "PYTHONSAFEPATH"):
                            b.stack.env.pop(name, None)
                    for mode in MODES:
                        restart_authz(b, mode, 1)
                        results.setdefault((variant, mode), []).append(
                            measure(b, mode, args.seconds)
                        )
        finally:
            b.stack.stop_all()
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           check=False, capture_output=True)  # fmt: skip
    print(f"authz direct, 1 worker, exact mode: {args.base} (base) against this checkout, "
          f"{args.rounds} interleaved rounds of {args.seconds} s, medians")  # fmt: skip
    for mode in MODES:
        (b_rps, b_cpu), (t_rps, t_cpu) = (
            tuple(statistics.median(x[i] for x in results[(v, mode)]) for i in (0, 1))
            for v in ("base", "this")
        )
        print(f"  {mode}: checks/s base {b_rps:,.0f}, this {t_rps:,.0f} ({t_rps / b_rps:.3f}); "
              f"CPU per check base {b_cpu:.1f} µs, this {t_cpu:.1f} µs ({t_cpu / b_cpu:.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
