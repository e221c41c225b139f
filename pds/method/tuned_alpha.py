"""PDS's alpha per iteration count: the table ``--mode=tune`` writes, and its lookup.

The table (``<workdir>/tune/alpha.json``) lists tuned iteration counts N_j with their best
alpha*_j, or null where the sampler without PDS beat every alpha. With
``sampling.pds.tuned`` set to its path, a run of N iterations uses

- alpha*_j when N = N_j;
- between two tuned counts N_j < N < N_{j+1} with finite alphas, the log-log interpolation
  log alpha = log alpha*_j + (log N - log N_j) / (log N_{j+1} - log N_j)
  (log alpha*_{j+1} - log alpha*_j) (alpha* follows a power of N closely; see the tune
  report's fit); when either neighbour is null, the nearer one in log N;
- outside [N_1, N_last]: a ConfigError (the table says nothing there).

A null alpha turns the preconditioner off (``sampling.precondition='none'``).
"""

from __future__ import annotations

import itertools
import json
import math
import os

from pds.runtime.bounds import MAX_ITERATIONS as MAX_TABLE_STEPS
from pds.runtime.errors import ConfigError

FIELD = 'sampling.pds.tuned'
EXPECTED = "a tune/alpha.json written by --mode=tune"


MAX_TABLE_BYTES = 1 << 20  # a table of MAX_RUNGS counts is a few kB


def _refuse_constant(token: str):
    raise ValueError(f'{token} is not a JSON number')


def _strict_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f'{text} is not a finite float64')
    return value


def load_table(path: str) -> dict:
    """The JSON object of ``path``: strict JSON numbers (no NaN / Infinity, none beyond
    float64), at most MAX_TABLE_BYTES (checked before reading), ConfigError otherwise."""
    if not os.path.isfile(path):
        raise ConfigError(FIELD, path, f'{EXPECTED} (no such file)')
    try:
        size = os.path.getsize(path)
        if size > MAX_TABLE_BYTES:
            raise ValueError(f'{size} bytes, more than the {MAX_TABLE_BYTES} a table can need')
        with open(path, encoding='utf-8') as fp:
            table = json.loads(fp.read(MAX_TABLE_BYTES + 1), parse_constant=_refuse_constant,
                               parse_float=_strict_float)
        if not isinstance(table, dict):
            raise TypeError('the file does not hold a JSON object')
    except (OSError, ValueError, TypeError, RecursionError) as err:
        raise ConfigError(FIELD, path, f'{EXPECTED} ({type(err).__name__}: '
                          f'{str(err)[:200]})') from None
    return table


def read_table(path: str) -> tuple[list[int], list[float | None]]:
    """(tuned iteration counts, increasing; alpha* per count, None: no PDS) from ``path``."""
    table = load_table(path)
    try:
        raw_steps, raw_alphas = list(table['steps']), list(table['alpha'])
        if any(isinstance(s, bool) or not isinstance(s, int) for s in raw_steps):
            raise TypeError(f'steps {raw_steps[:8]} are not all integers')
        if any(a is not None and (isinstance(a, bool) or not isinstance(a, int | float))
               for a in raw_alphas):
            raise TypeError('alpha holds an entry that is neither a number nor null')
        steps = [int(s) for s in raw_steps]
        alphas = [None if a is None else float(a) for a in raw_alphas]
    except (ValueError, KeyError, TypeError, OverflowError) as err:
        raise ConfigError(FIELD, path, f'{EXPECTED} ({type(err).__name__}: '
                          f'{str(err)[:200]})') from None
    ok = (len(steps) == len(alphas) >= 1 and all(1 <= s <= MAX_TABLE_STEPS for s in steps)
          and all(b > a for a, b in itertools.pairwise(steps))
          and all(a is None or (math.isfinite(a) and a > 1) for a in alphas))
    if not ok:
        raise ConfigError(FIELD, path, f'{EXPECTED} (increasing integer counts in [1, '
                          f'{MAX_TABLE_STEPS}], one alpha > 1 or null each)')
    return steps, alphas


def alpha_for(steps: list[int], alphas: list[float | None], n: int, path: str = ''
              ) -> float | None:
    """alpha for n iterations from the table (module docstring)."""
    if not steps[0] <= n <= steps[-1]:
        raise ConfigError('sampling.steps', n, f'an iteration count in [{steps[0]}, '
                          f'{steps[-1]}], the range tuned in {path or "the table"}')
    j = max(i for i, s in enumerate(steps) if s <= n)
    if steps[j] == n:
        return alphas[j]
    lo, hi = alphas[j], alphas[j + 1]
    u = (math.log(n) - math.log(steps[j])) / (math.log(steps[j + 1]) - math.log(steps[j]))
    if lo is None or hi is None:
        return lo if u <= 0.5 else hi
    return math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
