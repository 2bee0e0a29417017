"""The hostile sweep (tests/test_hostile.py) tallied by command: held / total, for docs/safety.md.

    python benchmarks/hostile.py            # runs the sweep once and prints a markdown table

A case "holds" when its test passes: one line and a non-zero exit for a refusal (no traceback, no file
changed), or a correct output for odd but valid input. Wall and CPU seconds of the run are printed too.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# tests that are not one CASES entry: the command each one exercises (first match of the name wins)
BY_NAME = (
    ("nan_loss|loss_guard|train_refuses", "train"),
    ("video", "video"),
    ("closed_standard_output|closed_pipe", "models / layers (stdout)"),
    ("lock_refuses|all_or_none", "locks (library)"),
    ("dream|config_is_an_input|mask|minimum|stale_lock", "dream"),
)


def command_of(name: str, cases: dict) -> str:
    case = re.fullmatch(r"test_hostile_input_is_one_line_and_touches_nothing\[(.*)\]", name)
    if case:
        return cases[case.group(1)][0][0]
    for pattern, command in BY_NAME:
        if re.search(pattern, name):
            return command
    return "other"


def main() -> None:
    from test_hostile import CASES

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        start = time.perf_counter()
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
        subprocess.run([*argv, str(ROOT / "tests" / "test_hostile.py")], cwd=ROOT, env={**os.environ}, check=False)
        wall = time.perf_counter() - start
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        held, total = Counter(), Counter()
        for case in ET.parse(report).getroot().iter("testcase"):
            command = command_of(case.get("name"), CASES)
            total[command] += 1
            held[command] += not any(case.find(tag) is not None for tag in ("failure", "error", "skipped"))
    print("| command | held / total |\n|---|---|")
    for command in sorted(total, key=lambda c: (-total[c], c)):
        print(f"| `{command}` | {held[command]} / {total[command]} |")
    print(f"| **all** | **{sum(held.values())} / {sum(total.values())}** |")
    print(f"\nwall {wall:.0f} s, CPU {cpu.ru_utime + cpu.ru_stime:.0f} s (the sweep's processes, children included)")


if __name__ == "__main__":
    main()
