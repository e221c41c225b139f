"""Nothing lost, nothing silent, part two (issue 29), through ``main.py`` as a user runs it:
each probe of the issue on a copy of a finished sample run with ``--overwrite`` ends with exit
2, one ``error:`` line naming the field, no traceback, and every file of the earlier run
byte-identical (sha256 before and after)."""

from __future__ import annotations

import json
import os

import pytest

from pds.method import tuned_tables
from tests.test_reliability import (  # noqa: F401 (sample_run: a fixture)
    FIELD,
    SMALL,
    copy_of,
    error_line,
    main_py,
    sample_run,
    tree_hash,
)

pytestmark = pytest.mark.slow  # main.py subprocesses




@pytest.fixture(scope='module')
def tables(tmp_path_factory):
    """Tuned tables: one with Infinity, one tuned for FFHQ-256 (sigma_max 348)."""
    from configs.ve.ffhq_256_ncsnpp_continuous import get_config

    folder = tmp_path_factory.mktemp('tables')
    (folder / 'inf.json').write_text('{"steps": [2, 40], "alpha": [3.0, Infinity]}')
    table = {'steps': [2, 40], 'alpha': [3.0, 5.0],
             'sampler': tuned_tables.sampler_settings(get_config())}
    (folder / 'ffhq.json').write_text(json.dumps(table))
    return folder


PROBES = [
    (['--config.sampling.speed_up=1e-6'], 'sampling.speed_up=1e-06'),  # 1e9 iterations
    (['--config.sampling.speed_up=0.005'], 'sampling.speed_up=0.005'),  # 200,000
    (['--config.eval.num_samples=1', '--config.eval.batch_size=1'], 'eval.num_samples=1'),
    (['--config.model.sigma_min=0'], 'model.sigma_min=0.0'),
    (['--config.model.sigma_min=30'], 'model.sigma_max=20.0'),
    (['--config.model.sigma_max=-1'], 'model.sigma_max=-1.0'),
    (['--config.sampling.method=dopri5', '--config.sampling.adaptive.rtol=1e-30',
      '--config.sampling.adaptive.atol=1e-30'], 'sampling.adaptive.rtol=1e-30'),
    (['--config.sampling.grid=karras', '--config.sampling.rho=1e-300'], 'sampling.rho=1e-300'),
    (['--config.sampling.method=edm_stochastic', '--config.sampling.edm.s_churn=40',
      '--config.sampling.edm.s_noise=1e30'], 'sampling.edm.s_noise=1e+30'),
    (['--config.sampling.pds.tuned={tables}/inf.json'], 'inf.json'),
    (['--config.sampling.pds.tuned={tables}/ffhq.json'], "dataset: the table records 'FFHQ'"),
    (['--mode=bench', '--config.bench.num_samples=1'], 'bench.num_samples=1'),
    (['--mode=bench', "--config.bench.samplers=('pc','edm_heun')", '--config.bench.nfe=(1,)'],
     "bench.samplers='pc'"),
    (['--mode=bench', "--config.bench.samplers=('pc_pds_tuned',)",
      '--config.sampling.pds.tuned={tables}/inf.json'], 'inf.json'),
    (['--mode=tune', '--config.tune.steps=(20,2000000)'], 'tune.steps'),
    (['--mode=train', '--config.training.n_iters=18446744073709551615'], 'training.n_iters'),
]


@pytest.mark.parametrize('args,named', PROBES)
def test_probe_refused_in_one_line_and_the_earlier_run_unchanged(sample_run, tables, tmp_path,  # noqa: F811
                                                                  args, named):
    workdir = copy_of(sample_run, tmp_path)
    before = tree_hash(workdir)
    args = [a.format(tables=tables) for a in args]
    small = [a for a in SMALL if 'speed_up' not in ''.join(args)  # steps would override it
             or not a.startswith('--config.sampling.steps')]
    res = main_py(f'--config={FIELD}', f'--workdir={workdir}', '--overwrite', *small, *args)
    assert res.returncode == 2, res.stderr[-3000:]
    assert named in error_line(res)
    assert tree_hash(workdir) == before
    assert sorted(os.listdir(workdir)) == ['metrics.json', 'samples']
