"""The predictor-corrector solver (score_sde's ``sampling.method='pc'``), with PDS.

Each iteration i at time t_i: ``n_steps_each`` corrector steps, then one predictor step
(:mod:`pds.sampling.correctors`, :mod:`pds.sampling.predictors`); the state is (x, x_mean)
and the output is x_mean of the last step (``noise_removal``) or x. Noise slots of iteration
i: the corrector draws slots 0 .. n_steps_each - 1, the predictor the next ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pds.method.sde import SDE, subVPSDE
from pds.runtime.errors import ConfigError, check_choice
from pds.sampling.context import Context, StepEnv
from pds.sampling.correctors import get_corrector
from pds.sampling.declaration import SolverSpec
from pds.sampling.grid import Interval
from pds.sampling.predictors import get_predictor
from pds.sampling.solver import register_solver

PREDICTOR_FORMS = ('reference', 'invariant')


@dataclasses.dataclass(frozen=True)
class PredictorCorrector:
    predictor: str = 'reverse_diffusion'
    corrector: str = 'langevin'
    snr: float = 0.16
    n_steps_each: int = 1
    probability_flow: bool = False
    noise_removal: bool = True
    predictor_form: str = 'reference'  # how M enters the reverse-SDE predictors

    def env(self, ctx: Context) -> StepEnv:
        return StepEnv(ctx.sde, ctx.score_fn, ctx.precond, self.snr, self.n_steps_each,
                       self.probability_flow, ctx.batch_mean, self.predictor_form)

    def init(self, ctx: Context, x):
        return x, x

    def step(self, ctx: Context, state, interval: Interval):
        x, _ = state
        env = self.env(ctx)
        t = ctx.times(interval.t)
        c_noise = lambda slot: ctx.noise(interval, slot)
        p_noise = lambda slot: ctx.noise(interval, self.n_steps_each + slot)
        x, _ = get_corrector(self.corrector)(env, x, t, interval.index, c_noise)
        return get_predictor(self.predictor)(env, x, t, interval.index, p_noise)

    def output(self, ctx: Context, state):
        x, x_mean = state
        return x_mean if self.noise_removal else x

    def summary(self) -> dict[str, Any]:
        """The settings; the predictor form is reported with the PDS settings."""
        out = dataclasses.asdict(self)
        del out['predictor_form']
        return out


def _pc_nfe(sampling) -> tuple[int, int]:
    """NFE(N) = (n_steps_each [corrector] + 1 [predictor]) N."""
    corrector = sampling.n_steps_each if sampling.corrector != 'none' else 0
    return corrector + (1 if sampling.predictor != 'none' else 0), 0


SPEC = SolverSpec(
    name='pc', kind='SDE', preconditioner='sde',
    preconditioner_reason='the Langevin corrector with M M^T drift and M noise keeps p_t for '
    'any invertible M (PDS, Ma et al. 2022, arXiv 2207.02196); the reverse-diffusion predictor '
    "keeps the marginals only in sampling.pds.predictor_form='invariant'",
    noise="corrector slots 0 .. n_steps_each - 1, then the predictor's",
    moments='propagated', grid='ladder', nfe=_pc_nfe,
    nfe_text='N (1 + `n_steps_each`); N with corrector `none`',
    where_text='x_T; the corrector (`langevin`, `ald`); the `reverse_diffusion` and '
    '`euler_maruyama` predictors, in `sampling.pds.predictor_form` `reference` (the '
    "paper's) or `invariant`; `ancestral_sampling` ignores M",
    reference='score_sde (Song et al. 2021, arXiv 2011.13456; github.com/yang-song/score_sde); '
    'PDS (arXiv 2207.02196; github.com/fudan-zvg/PDS)',
    bench_pds=('pds', 'pds_tuned'), bench_prior='score_sde')


@register_solver(SPEC)
def from_config(config, sde: SDE) -> PredictorCorrector:
    s = config.sampling
    get_predictor(s.predictor)
    get_corrector(s.corrector)
    if s.predictor == 'ancestral_sampling' and isinstance(sde, subVPSDE):
        raise ConfigError('sampling.predictor', s.predictor,
                          'training.sde vesde or vpsde (no ancestral step for subvpsde)')
    if not isinstance(s.n_steps_each, int) or s.n_steps_each < 1:
        raise ConfigError('sampling.n_steps_each', s.n_steps_each, 'an integer >= 1')
    if not isinstance(s.snr, int | float) or not s.snr > 0:
        raise ConfigError('sampling.snr', s.snr, 'a number > 0')
    form = s.pds.get('predictor_form', 'reference')
    check_choice('sampling.pds.predictor_form', form, PREDICTOR_FORMS)
    if form == 'invariant' and s.probability_flow:
        raise ConfigError('sampling.pds.predictor_form', form,
                          "'reference' with sampling.probability_flow=True (the invariant form "
                          'is a reverse SDE; a preconditioner may not enter an ODE drift)')
    return PredictorCorrector(s.predictor, s.corrector, float(s.snr), int(s.n_steps_each),
                              bool(s.probability_flow), bool(s.noise_removal), form)
