"""The old/new process loop shared by search_ab.py and train_ab.py: one child process per checkout, alternating."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def interleaved(old: str, new: str, rounds: int, command: list[str]) -> dict[str, list[dict]]:
    """Run `command` (a child that prints one JSON line last) `rounds` times per side, old, new, old, ...; each with
    PYTHONPATH at that side's checkout. Returns each side's parsed lines; a failing child stops with its stderr."""
    results: dict[str, list[dict]] = {"old": [], "new": []}
    for _ in range(rounds):
        for side, folder in (("old", old), ("new", new)):
            env = dict(os.environ, PYTHONPATH=str(Path(folder).resolve()))
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{side} ({folder}) failed:\n{done.stderr[-3000:]}")
            results[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results
