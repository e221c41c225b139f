"""Progress bars: over rounds on the host, and over sampler iterations fed from inside the
compiled scan (``jax.debug.callback``, throttled to about 50 updates per run)."""

from __future__ import annotations

import sys

from tqdm import tqdm


class IterationBar:
    """A bar the scan's callback moves to iteration ``k``; ``reset`` between rounds."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        self.bar = tqdm(total=total, desc=desc, unit='it', leave=False, position=1,
                        disable=not enabled, file=sys.stderr, dynamic_ncols=True)

    def __call__(self, k: int) -> None:
        self.bar.n = k
        self.bar.refresh()

    def reset(self) -> None:
        self.bar.reset()

    def close(self) -> None:
        self.bar.close()


def round_bar(total: int, desc: str, enabled: bool = True) -> tqdm:
    return tqdm(total=total, desc=desc, unit='round', position=0, disable=not enabled,
                file=sys.stderr, dynamic_ncols=True)


def close_bars() -> None:
    """Close every open bar and end its line, so that what is printed next starts on a fresh
    line (a closed bar leaves the cursor after its escape codes)."""
    shown = [bar for bar in list(getattr(tqdm, '_instances', ())) if not bar.disable]
    for bar in shown:
        bar.close()
    if shown:
        print(file=sys.stderr, flush=True)


def fail(message: str, code: int) -> None:
    """Leave with ``code`` after printing ``message`` (one line) on a fresh stderr line."""
    close_bars()
    print(message, file=sys.stderr, flush=True)
    sys.exit(code)
