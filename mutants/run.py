"""Mutation testing of ``rtl/``: apply each catalogue mutant in a scratch copy and run its targeted tests.

Usage (from the project root; ``make mutants`` runs the whole catalogue)::

    python -m mutants.run [--only NAME ...] [--list] [--timeout SECONDS] [--out mutants/RESULTS.md]

Per mutant: KILLED (a test failed, errored or ran out of time), SURVIVED (every test of its
subset passed), STALE (its anchor no longer matches exactly once: refresh the catalogue) or
EQUIVALENT (listed with the reason; not run, not in the score).  The unmutated copy is run
first on every subset used; if it fails, nothing is scored.  The score is killed over
killed + survived; stale mutants are reported loudly and make the exit status non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mutants.catalogue import CATALOGUE, TEST_SETS, Mutant

ROOT = Path(__file__).resolve().parent.parent
#: What the scratch copy needs: the packages, the tests, the project configuration.
_COPY = ("rtl", "golden", "tb", "sim", "septet", "tests", "formal", "pyproject.toml")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "sim_build", ".pytest_cache")


def apply(mutant: Mutant, text: str) -> "str | None":
    """The mutated text, or ``None`` when the anchor does not match exactly once (stale)."""
    pattern = re.compile(mutant.anchor, re.MULTILINE)
    if len(pattern.findall(text)) != 1:
        return None
    mutated = pattern.sub(mutant.replacement, text, count=1)
    return mutated if mutated != text else None


def _scratch_copy(into: Path) -> Path:
    for name in _COPY:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=_IGNORE)
        elif source.is_file():
            shutil.copy2(source, into / name)
    return into


def _pytest(scratch: Path, tests, timeout: float) -> "tuple[str, float, str]":
    """Run ``tests`` in ``scratch`` (its own modules first on the path); (status, seconds, last lines)."""
    paths = [t for t in tests if (scratch / t.split("::")[0]).exists()]
    env = {**os.environ, "PYTHONPATH": str(scratch), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *paths]
    start = time.perf_counter()
    try:
        run = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start, f"no result within {timeout:.0f} s"
    seconds = time.perf_counter() - start
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    summary = (failed[0] if failed else (lines[-1] if lines else run.stderr.strip()[-300:]))
    return ("pass" if run.returncode == 0 else "fail"), seconds, summary


def _check_scratch_imports(scratch: Path) -> None:
    """The scratch copy's ``rtl`` must be the one imported (not the project's editable install)."""
    env = {**os.environ, "PYTHONPATH": str(scratch)}
    out = subprocess.run([sys.executable, "-c", "import rtl; print(rtl.__file__)"], cwd=scratch, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to(scratch.resolve()):
        raise RuntimeError(f"the scratch copy imports rtl from {out}, not from {scratch}")


def run(mutants, *, timeout: float, tests=None, log=print) -> dict:
    """Run ``mutants`` (each against its subset, or all against ``tests`` when given)."""
    test_sets = TEST_SETS if tests is None else {key: tuple(tests) for key in TEST_SETS}
    results = []
    with tempfile.TemporaryDirectory(prefix="septet-mutants-") as tmp:
        scratch = _scratch_copy(Path(tmp) / "project")
        _check_scratch_imports(scratch)
        baseline = {}
        for tests_run in sorted({test_sets[m.tests] for m in mutants if m.equivalent is None}):
            key = " ".join(tests_run)
            status, seconds, summary = _pytest(scratch, tests_run, timeout)
            baseline[key] = {"status": status, "seconds": round(seconds, 1)}
            log(f"baseline {status} in {seconds:.1f} s: {key}")
            if status != "pass":
                raise SystemExit(f"the unmutated tests fail ({key}): {summary}; nothing is scored")
        for mutant in mutants:
            path = scratch / mutant.file
            original = path.read_text()
            mutated = apply(mutant, original)
            record = {"name": mutant.name, "file": mutant.file, "description": mutant.description,
                      "tests": mutant.tests}
            if mutated is None:
                record.update(status="STALE", detail=f"anchor {mutant.anchor!r} does not match exactly once")
            elif mutant.equivalent is not None:
                record.update(status="EQUIVALENT", detail=mutant.equivalent)
            else:
                path.write_text(mutated)
                try:
                    status, seconds, summary = _pytest(scratch, test_sets[mutant.tests], timeout)
                finally:
                    path.write_text(original)
                record.update(status="SURVIVED" if status == "pass" else "KILLED", seconds=round(seconds, 1),
                              detail=summary)
            results.append(record)
            log(f"{record['status']:10s} {mutant.name:34s} {record.get('seconds', '')!s:>6} {record['detail'][:110]}")
    killed = sum(r["status"] == "KILLED" for r in results)
    survived = sum(r["status"] == "SURVIVED" for r in results)
    return {"results": results, "baseline": baseline, "killed": killed, "survived": survived,
            "stale": sum(r["status"] == "STALE" for r in results),
            "equivalent": sum(r["status"] == "EQUIVALENT" for r in results),
            "score": f"{killed}/{killed + survived}"}


def markdown(report: dict, command: str, seconds: float) -> str:
    lines = ["# Mutation testing result", "",
             f"`{command}`: score **{report['score']}** killed (of the non-equivalent mutants that ran); "
             f"{report['survived']} survived, {report['stale']} stale, {report['equivalent']} equivalent "
             f"(listed with the reason, not scored); {seconds:.0f} s in all.", "",
             "| mutant | file | status | s | bug / why equivalent / first failing test |", "|---|---|---|---|---|"]
    for r in report["results"]:
        detail = r["detail"] if r["status"] in ("EQUIVALENT", "STALE") else f"{r['description']}: {r['detail']}"
        detail = detail.replace("|", "\\|")
        lines.append(f"| {r['name']} | {r['file']} | {r['status']} | {r.get('seconds', '')} | {detail} |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutants.run", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", metavar="NAME", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the catalogue and whether each anchor matches")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant (a timeout kills it)")
    parser.add_argument("--tests", nargs="+", metavar="PATH",
                        help="run every chosen mutant against these tests instead of its targeted subset")
    parser.add_argument("--out", type=Path, help="write the Markdown table and a JSON beside it")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be > 0 seconds, got {args.timeout}")
    names = {m.name for m in CATALOGUE}
    unknown = sorted(set(args.only or ()) - names)
    if unknown:
        parser.error(f"--only: unknown mutant(s) {unknown}; see --list")
    mutants = [m for m in CATALOGUE if not args.only or m.name in args.only]
    if args.list:
        for m in mutants:
            ok = apply(m, (ROOT / m.file).read_text()) is not None
            print(f"{'ok   ' if ok else 'STALE'} {m.name:34s} {m.file:18s} {m.description}")
        return 0
    start = time.perf_counter()
    report = run(mutants, timeout=args.timeout, tests=args.tests)
    seconds = time.perf_counter() - start
    print(f"\nscore {report['score']} killed; {report['survived']} survived, {report['stale']} STALE, "
          f"{report['equivalent']} equivalent; {seconds:.0f} s")
    if report["stale"]:
        print(f"WARNING: {report['stale']} STALE mutant(s): their anchors no longer match; refresh "
              "mutants/catalogue.py", file=sys.stderr)
    if args.out:
        command = "make mutants" if not (args.only or args.tests) else "python -m mutants.run " + " ".join(argv or sys.argv[1:])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for path, text in ((args.out, markdown(report, command, seconds)),
                           (args.out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")):
            pending = path.with_suffix(path.suffix + ".tmp")
            pending.write_text(text)
            pending.replace(path)
    return 1 if report["stale"] or report["survived"] else 0


if __name__ == "__main__":
    sys.exit(main())
