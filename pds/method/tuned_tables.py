"""Whether a tuned alpha table (``sampling.pds.tuned``) was made for the run that reads it.

``--mode=tune`` records, beside alpha*(N), the settings it tuned under
(:func:`sampler_settings`: the SDE and its noise range, the predictor, the corrector and its
snr and steps, the preconditioner's masks, transform and predictor form, the data). alpha*
depends on each of them, so a run whose settings differ would apply alphas tuned for another
problem (a table of FFHQ-256 at sigma_max 348 on the 16x16 field). :func:`check_tuned`, run
before any work, reads the table (strictly: :func:`pds.method.tuned_alpha.read_table`) and
compares the settings it records with the run's: a difference is a ConfigError naming the
first differing setting, unless ``sampling.pds.tuned_any_config=True``. A table without
recorded settings is compared with nothing.
"""

from __future__ import annotations

from typing import Any

from pds.method import tuned_alpha
from pds.runtime.errors import ConfigError

OVERRIDE = 'sampling.pds.tuned_any_config'


def sampler_settings(config) -> dict[str, Any]:
    """What a table is valid for: the sampler and schedule it was tuned on."""
    s, m = config.sampling, config.model
    return {'sde': config.training.sde, 'sigma_max': m.sigma_max, 'sigma_min': m.sigma_min,
            'num_scales': m.num_scales, 'predictor': s.predictor, 'corrector': s.corrector,
            'snr': s.snr, 'n_steps_each': s.n_steps_each,
            'predictor_form': s.pds.get('predictor_form', 'reference'),
            'freq_mask': s.pds.freq_mask, 'space_mask': s.pds.space_mask,
            'transform': s.pds.transform, 'dataset': config.data.dataset,
            'image_size': config.data.image_size}


def _plain(v: Any) -> Any:
    return [_plain(x) for x in v] if isinstance(v, tuple | list) else v


def first_difference(recorded: dict, run: dict) -> str | None:
    """'key: recorded R, this run V' for the first recorded key whose value differs."""
    for key in sorted(recorded):
        if key in run and _plain(recorded[key]) != _plain(run[key]):
            return f'{key}: the table records {recorded[key]!r}, this run has {run[key]!r}'
    return None


def table_in_use(config, mode: str) -> str:
    """The path of the table the mode reads ('' when it reads none)."""
    pds = config.sampling.get('pds', None)
    path = pds.get('tuned', '') if pds is not None else ''
    if not path:
        return ''
    if mode in ('sample', 'eval'):
        return path
    if mode == 'bench' and 'pc_pds_tuned' in tuple(config.bench.get('samplers', ())):
        return path
    return ''


def check_tuned(config, mode: str) -> None:
    """Read the table the mode uses and compare its recorded settings (module docstring)."""
    path = table_in_use(config, mode)
    if not path:
        return
    tuned_alpha.read_table(path)
    recorded = tuned_alpha.load_table(path).get('sampler')
    if not isinstance(recorded, dict) or config.sampling.pds.get('tuned_any_config', False):
        return
    diff = first_difference(recorded, sampler_settings(config))
    if diff:
        raise ConfigError(tuned_alpha.FIELD, path, f'a table tuned for this run\'s settings '
                          f'({diff}; set {OVERRIDE}=True to use it anyway)')
