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

from pds.runtime.errors import ConfigError

FIELD = 'sampling.pds.tuned'
EXPECTED = "a tune/alpha.json written by --mode=tune"


def read_table(path: str) -> tuple[list[int], list[float | None]]:
    """(tuned iteration counts, increasing; alpha* per count, None: no PDS) from ``path``."""
    if not os.path.isfile(path):
        raise ConfigError(FIELD, path, f'{EXPECTED} (no such file)')
    try:
        with open(path, encoding='utf-8') as fp:
            table = json.load(fp)
        steps = [int(s) for s in table['steps']]
        alphas = [None if a is None else float(a) for a in table['alpha']]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(FIELD, path, f'{EXPECTED} ({type(err).__name__}: {err})') from None
    ok = (len(steps) == len(alphas) >= 1 and all(s >= 1 for s in steps)
          and all(b > a for a, b in itertools.pairwise(steps))
          and all(a is None or (math.isfinite(a) and a > 1) for a in alphas))
    if not ok:
        raise ConfigError(FIELD, path, f'{EXPECTED} (increasing counts >= 1, one alpha > 1 '
                          'or null each)')
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
