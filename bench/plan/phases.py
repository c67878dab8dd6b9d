#!/usr/bin/env python3
"""Splits a `pic2 apply` run's wall-clock time by system, from its progress lines.

    pic2 -c FILE apply --yes 2>&1 | phases.py START OUT.txt      (START: epoch seconds)

Without a terminal, apply prints its plan on stdout, then `[i/total] summary` on stderr for
every change of a small plan and every percent of a large one. Each line is stamped on
arrival: from START (when pic2 was started) to the first progress line, the time goes to
"plan" (start, connect, read, diff, print);
after it, the time since the previous progress line goes to the system its summary names (so
the split is exact to one percent). Lines are passed through to stderr. OUT.txt gets one line:
    TOTAL_CHANGES plan=S directory=S databases=S files=S other=S
"""

import re
import sys
import time

PROGRESS = re.compile(r"^\[(\d+)/(\d+)\] (.*)$")


def system_of(summary: str) -> str:
    """The system a change summary belongs to (pic2's wording, see crates/plan)."""
    words = summary.split()
    target = words[1] if len(words) > 1 else ""
    if re.match(r"^(add|update|delete) (uid|cn|ou)=", summary):
        return "directory"
    if re.match(r"^(create database|create user|drop user|grant|revoke|set the comment|set the password|DROP DATABASE)", summary):
        return "databases"
    if target.startswith("/") or summary.startswith(("create /", "write /", "delete /")):
        return "files"
    return "other"


def main() -> None:
    start, out = float(sys.argv[1]), sys.argv[2]
    spent = {"plan": 0.0, "directory": 0.0, "databases": 0.0, "files": 0.0, "other": 0.0}
    total = 0
    last = start
    for line in sys.stdin:
        sys.stderr.write(line)
        now = time.time()
        m = PROGRESS.match(line.rstrip("\n"))
        if not m:
            if total == 0:  # still the plan's printout
                spent["plan"] += now - last
                last = now
            continue
        spent[system_of(m.group(3))] += now - last
        last = now
        total = int(m.group(2))
    with open(out, "w", encoding="utf-8") as f:
        f.write(f"{total} " + " ".join(f"{k}={v:.2f}" for k, v in spent.items()) + "\n")


if __name__ == "__main__":
    main()
