"""The two progress-callback shapes every long-running function takes (`progress=None` means silent).

  Progress       progress(fraction, message): fraction of the whole job in [0, 1] and what it is doing
                 (training, embedding, building a workspace: anything a bar with a caption shows)
  CountProgress  progress(done, total): items finished of a known total (index rows, images drawn,
                 queries searched, sweep cells), for a counter bar such as tqdm's

`as_fraction` adapts a CountProgress job to a Progress callback and `as_count` the other way.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]
CountProgress = Callable[[int, int], None]


def as_fraction(progress: Progress | None, message: str) -> CountProgress | None:
    """A (done, total) callback that reports done/total to `progress` with a fixed `message`."""
    if progress is None:
        return None
    report = progress

    def count(done: int, total: int) -> None:
        report(done / total if total > 0 else 1.0, f"{message} {done}/{total}")

    return count


def as_count(progress: CountProgress | None, scale: int = 1000) -> Progress | None:
    """A (fraction, message) callback that reports round(fraction * scale) of `scale` to `progress`."""
    if progress is None:
        return None
    report = progress

    def fraction(value: float, _message: str) -> None:
        report(round(min(max(value, 0.0), 1.0) * scale), scale)

    return fraction
