"""How many CPU threads a run trains with: torch's count, halved while a timed step gets clearly faster.

torch sizes its intra-op pool to the machine's cores. Where other work holds some of them (a shared
machine, several runs side by side, a container given fewer CPUs than its host has), every parallel op
waits for a thread that is not scheduled: MiniLM's search step took 0.79 s at 2 threads beside one busy
process and 0.39 s at 1 (0.26 s at 2 on idle cores; docs/benchmarks.md, "Threads on a busy machine").
So where the caller fixed no count, the plan's timed step at torch's count is timed again at half of it,
and halved again while each halving's step takes under :data:`FASTER` of the best so far; on idle cores the
first halving is slower and the run keeps torch's count, for the price of two steps. A step shorter than
:data:`MIN_STEP_SECONDS` is not timed again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FASTER", "MIN_STEP_SECONDS", "ThreadChoice", "choose_threads"]

# A halved count is taken where its step takes less than this share of the best time so far. Beside busy work
# a halving halved MiniLM's step (above); on idle cores small ops can run a little faster on fewer
# threads too, and a margin that one timed step's noise crosses would change the count, and with it the float
# rounding and the mask, from one run to the next.
FASTER = 0.75
# Steps shorter than this are not timed at fewer threads: a run of them takes seconds at any count, and their
# timings are the noisiest (the README's bundled ResNet: 0.04 s a step; the tests' models: milliseconds).
MIN_STEP_SECONDS = 0.1


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count a run trains with, and the step times it was chosen from."""

    threads: int
    step_seconds: float  # one training step at ``threads``
    tried: tuple[tuple[int, float], ...]  # (threads, seconds a step), in the order timed

    @property
    def timed(self) -> bool:
        """Whether any count besides the first was timed (not for a step under :data:`MIN_STEP_SECONDS`)."""
        return len(self.tried) > 1

    def note(self) -> str:
        """One clause for the plan's reason, e.g. ``1 thread of 2: 0.39 s a step (2: 0.79 s; ...)``."""
        first, first_seconds = self.tried[0]
        others = "; ".join(f"{n}: {s:.2f} s" for n, s in self.tried if n != self.threads)
        if self.threads == first:
            return f"{first} threads: {first_seconds:.2f} s a step ({others})"
        unit = "thread" if self.threads == 1 else "threads"
        return (f"{self.threads} {unit} of {first}: {self.step_seconds:.2f} s a step ({others}; other work holds "
                "some of the cores)")


def choose_threads(count: int, seconds: float, time_step: Callable[[int], float]) -> ThreadChoice:
    """The fastest of ``count``, ``count // 2``, ... threads, halving while each halving's step takes under
    :data:`FASTER` of the best so far; ``count`` untimed where its step takes under :data:`MIN_STEP_SECONDS`.

    Args:
        count: the thread count the run starts at (torch's).
        seconds: one step's time at ``count``.
        time_step: sets the thread count to its argument and returns one step's time there (the caller leaves
            the count at the returned choice's afterwards).
    """
    best = (count, seconds)
    tried = [best]
    while best[0] > 1 and seconds >= MIN_STEP_SECONDS:
        fewer = best[0] // 2
        took = time_step(fewer)
        tried.append((fewer, took))
        if took >= FASTER * best[1]:
            break
        best = (fewer, took)
    return ThreadChoice(best[0], best[1], tuple(tried))
