"""`python -m bench [--quick] [--only NAME]`: run the suite, write the JSON and the summary."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import fairness, harness, intake, limits, pipeline, report, scaling, statements

BENCHMARKS: dict[str, Any] = {
    "intake": intake,
    "pipeline": pipeline,
    "limits": limits,
    "scaling": scaling,
    "fairness": fairness,
    "statements": statements,
}
RESULTS = harness.ROOT / "bench" / "results"
LATEST = RESULTS / "latest.json"
# Quick and partial runs must not overwrite the figures docs/performance.md was made from.
PARTIAL = RESULTS / "partial.json"
DOC = harness.ROOT / "docs" / "performance.md"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced sizes (under 2 minutes)")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--output", type=Path, help="JSON file to write (default: bench/results/latest.json)"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="only regenerate docs/performance.md from bench/results/latest.json",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.render:
        DOC.write_text(report.render(json.loads(LATEST.read_text())))
        _keep_scaleout_section()
        print(f"wrote {DOC.relative_to(harness.ROOT)}")
        return 0
    names = args.only or list(BENCHMARKS)
    full = not args.quick and not args.only
    command = "uv run python -m bench" + (" --quick" if args.quick else "")
    command += "".join(f" --only {name}" for name in args.only or [])
    started = time.monotonic()
    suite: dict[str, Any] = {
        "command": command,
        "mode": "quick" if args.quick else "full",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": harness.machine_info(),
        "timings": {
            "cast_pending_after_s": harness.CAST_PENDING_AFTER,
            "cast_final_after_s": harness.CAST_FINAL_AFTER,
            "status_poll_schedule": harness.POLL_SCHEDULE,
            "ghl_not_downstreamed_s": harness.GHL_NOT_DOWNSTREAMED,
            "report_initial_delay_s": harness.REPORT_DELAY,
        },
        "benchmarks": {},
    }
    machine = suite["machine"]
    if machine["load_average_at_start"][0] > 0.5:
        print(
            f"warning: load average {machine['load_average_at_start'][0]} before starting; "
            "other work on this machine will lower the figures",
            flush=True,
        )
    print(
        f"castbridge benchmarks ({suite['mode']}) on {machine['cpu_model']}, "
        f"{machine['cores']} cores, {machine['ram_gib']} GiB, Python {machine['python']}, "
        f"commit {machine['git_commit'][:10]}{' (dirty)' if machine['git_dirty'] else ''}",
        flush=True,
    )
    for name in names:
        module = BENCHMARKS[name]
        print(f"\n== {name}: {module.__doc__.splitlines()[0]}", flush=True)
        began = time.monotonic()
        watch = harness.LoadWatch().start()
        result = asyncio.run(module.run(args.quick))
        load = watch.stop()
        seconds = round(time.monotonic() - began, 1)
        suite["benchmarks"][name] = {"seconds": seconds, "load": load, "result": result}
        for line in module.summary(result):
            print(f"   {line}")
        print(
            f"   ({seconds} s; other processes kept {load['background_cores_busy']} of "
            f"{machine['cores']} cores busy meanwhile)",
            flush=True,
        )
    suite["total_seconds"] = round(time.monotonic() - started, 1)
    output = args.output or (LATEST if full else PARTIAL)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(suite, indent=2) + "\n")
    print(f"\nwrote {output} in {suite['total_seconds']} s total")
    if full and args.output is None:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(report.render(suite))
        _keep_scaleout_section()
        print(f"wrote {DOC.relative_to(harness.ROOT)}")
    return 0


def _keep_scaleout_section() -> None:
    """The scale-out figures come from their own run (`python -m bench.scaleout`): a re-render
    of the suite's page carries them over instead of dropping them."""
    from bench import scaleout

    if scaleout.RESULT.exists():
        scaleout.write_section(json.loads(scaleout.RESULT.read_text()))


if __name__ == "__main__":
    sys.exit(main())
