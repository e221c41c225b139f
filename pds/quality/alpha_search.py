"""The search for PDS's alpha at one iteration count N, the objective being the Frechet
distance of :mod:`pds.quality.estimates` (population or sampled) of the sampler with PDS at
alpha:

1. the baseline (no preconditioner) and every alpha of the grid ``Settings.alphas``;
2. population estimate only: a golden-section search on log alpha between the grid
   neighbours of the best grid point, ``Settings.refine`` more evaluations (the search keeps
   the best point seen, so it never returns worse than the grid);
3. alpha*(N): the alpha of the smallest FD, or None when the baseline beats every alpha.

With the sampled estimate there is no refinement (noise would steer it), and a pick within
2 SE of the runner-up is marked as not resolved. :func:`power_law_fit` summarises alpha*(N)
as log alpha* = a + b log N. ``--mode=tune`` (:mod:`pds.modes.tune`) runs it per N and writes
the table.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from pds.quality import estimates
from pds.quality.estimates import Experiments, Method

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...


@dataclasses.dataclass(frozen=True)
class Settings:
    """The search's settings (``tune.*``): iteration counts, the alpha grid, the golden-section
    evaluations, the estimate and, for the sampled one, its sample count and batch size."""

    steps: tuple[int, ...]
    alphas: tuple[float, ...]
    refine: int
    estimate: str
    num_samples: int
    batch_size: int


class Objective:
    """FD of (N, alpha) cells, each computed once (alpha None: the baseline)."""

    def __init__(self, config, workdir: str, estimate: str, settings: Settings):
        self.config, self.estimate, self.settings = config, estimate, settings
        self.form = config.sampling.pds.get('predictor_form', 'reference')
        self.experiments = Experiments(config, workdir)
        self.rows: dict[tuple[int, float | None], dict] = {}

    def __call__(self, n: int, alpha: float | None) -> float:
        key = (n, alpha)
        if key not in self.rows:
            method = Method(alpha, self.form)
            if self.estimate == 'population':
                row = estimates.population_cell(self.config, self.experiments, method, n)
            else:
                row = estimates.sampled_cell(self.config, self.experiments, method, n,
                                         self.settings.num_samples, self.settings.batch_size)
            self.rows[key] = row
        return float(self.rows[key]['frechet_distance'])

    def cells(self, n: int) -> list[dict]:
        return [r for (m, _), r in sorted(self.rows.items(), key=order) if m == n]


def order(item) -> tuple[int, float]:
    """Sort key of ``Objective.rows`` items: by N, the baseline first, then by alpha."""
    (n, alpha), _ = item
    return n, -1.0 if alpha is None else alpha


def golden_section(f, lo: float, hi: float, evaluations: int) -> None:
    """Minimise f over log alpha in [lo, hi] with ``evaluations`` calls (f records them)."""
    a, b = math.log(lo), math.log(hi)
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = f(math.exp(c)), f(math.exp(d))
    for _ in range(max(0, evaluations - 2)):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = f(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = f(math.exp(d))


def tune_one(objective: Objective, n: int, settings: Settings) -> dict:
    """alpha*(N) and the cells behind it (module docstring, steps 1-3)."""
    grid = settings.alphas
    fds = [objective(n, a) for a in grid]
    base = objective(n, None)
    i = int(np.argmin(fds))
    if objective.estimate == 'population' and settings.refine >= 2:
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        golden_section(lambda a: objective(n, a), lo, hi, settings.refine)
    tried = {a: r for (m, a), r in objective.rows.items() if m == n and a is not None}
    best = min(tried, key=lambda a: tried[a]['frechet_distance'])
    best_fd = tried[best]['frechet_distance']
    out = {'iterations': n, 'nfe': tried[best]['nfe'], 'alpha': best,
           'frechet_distance': best_fd, 'frechet_distance_se': tried[best]['frechet_distance_se'],
           'baseline_frechet_distance': base,
           'baseline_frechet_distance_se': objective.rows[(n, None)]['frechet_distance_se'],
           'resolved': True}
    if base <= best_fd:
        out.update(alpha=None, frechet_distance=base,
                   frechet_distance_se=out['baseline_frechet_distance_se'])
    if objective.estimate == 'sampled':
        cells = sorted([(r['frechet_distance'], r['frechet_distance_se'])
                        for r in objective.cells(n)])
        (f0, s0), (f1, s1) = cells[0], cells[1]
        out['resolved'] = bool(f1 - f0 > 2.0 * math.hypot(s0, s1))
    return out


def power_law_fit(table: list[dict]) -> dict | None:
    """log alpha* = a + b log N over the finite alpha* (None with fewer than two)."""
    pts = [(math.log(r['iterations']), math.log(r['alpha'])) for r in table
           if r['alpha'] is not None]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return None
    x, y = (np.asarray(v) for v in zip(*pts))
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    return {'log_a': float(a), 'exponent': float(b), 'coefficient': float(math.exp(a)),
            'rms_log_residual': float(np.sqrt(np.mean(resid**2))), 'points': len(pts)}
