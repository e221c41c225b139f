"""Every benchmark script, end to end at its ``--smoke`` size (benchmarks/smoke.py).

Each script runs as its README says (``PYTHONPATH=. python benchmarks/<script>.py``, from the
repository root) in its own process on the CPU, with ``--smoke --out <tmp>``; the test checks
the exit code, that the result file holds the script's fields, and that nothing under the
committed ``benchmarks/results/`` changed.

The runs are single-threaded compiles for the most part, so on a plain ``pytest`` run the
selected scripts start together, two at a time (``PARALLEL``), and each test waits for its
own; under pytest-xdist (``-n 2``, as ``make test`` runs) the workers already share the
cores, and each test runs its script itself.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.helpers.paths import ROOT

pytestmark = pytest.mark.slow  # left out of `make test-fast`

BENCHMARKS = os.path.join(ROOT, 'benchmarks')
RESULTS = os.path.join(BENCHMARKS, 'results')
NOT_SCRIPTS = {'__init__.py', 'smoke.py'}
TIMEOUT = 600
PARALLEL = 2


def has_smoke_size(script: str) -> bool:
    with open(os.path.join(BENCHMARKS, script)) as f:
        return '--smoke' in f.read()


# Script -> (output name under the run's folder, extra arguments; {tmp} is that folder),
# longest first (the order runs start in).
SCRIPTS = {
    'train_gaussian_field.py': ('result.json', ['--workdir', '{tmp}/train']),
    'field16_exact_vs_learned.py': ('result.json', []),
    'train_step_gpu.py': ('result.json', []),
    'gpu_check.py': ('result.json', []),
    'network_cpu.py': ('result.json', []),
    'reference_timing.py': ('result.json', []),  # ours only: no reference checkout here
    'host_memory.py': ('out', []),  # a folder: host_memory.json and .png
    'inception_throughput.py': ('result.json', []),
    'precondition_ffhq1024.py': ('result.json', []),
    'population_fd.py': ('result.json', []),
    'ode_samplers.py': ('result.json', []),
    'adaptive_solvers.py': ('result.json', []),
    'ode_corrector.py': ('result.json', []),
    'cpu_layout_check.py': ('result.json', []),
    'photo_swd_floor.py': ('result.json', []),
    'likelihood_exact.py': ('result.json', []),
}


def smoke_env() -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_DISABLE_MOST_OPTIMIZATIONS='1')
    env['PYTHONPATH'] = os.pathsep.join([ROOT, *filter(None, [env.get('PYTHONPATH')])])
    return env


def results_snapshot() -> dict[str, tuple[int, int]]:
    return {name: (st.st_size, st.st_mtime_ns) for name in sorted(os.listdir(RESULTS))
            for st in [os.stat(os.path.join(RESULTS, name))]}


def run_script(script: str, folder: str) -> str:
    """Run one script at --smoke size; its output path, or an AssertionError message."""
    name, extra = SCRIPTS[script]
    out = os.path.join(folder, name)
    cmd = [sys.executable, os.path.join('benchmarks', script), '--smoke', '--out', out,
           *(a.format(tmp=folder) for a in extra)]
    proc = subprocess.run(cmd, cwd=ROOT, env=smoke_env(), capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (f'{" ".join(cmd)} exited {proc.returncode}\n'
                                  f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    return out


class SmokeRuns:
    """The scripts' runs, each in its own folder; started ahead (PARALLEL at a time) for the
    selected tests unless pytest-xdist spreads the tests over workers."""

    def __init__(self, folder: Callable[[str], str], selected: list[str], ahead: bool):
        self.folder = folder
        self.before = results_snapshot()
        self.pool = concurrent.futures.ThreadPoolExecutor(PARALLEL) if ahead else None
        self.runs: dict[str, concurrent.futures.Future] = {}
        for script in (s for s in SCRIPTS if s in selected and self.pool is not None):
            self.runs[script] = self.pool.submit(run_script, script, folder(script))

    def output(self, script: str) -> str:
        if script in self.runs:
            out = self.runs[script].result()
        else:
            out = run_script(script, self.folder(script))
        assert results_snapshot() == self.before, 'a smoke run touched benchmarks/results/'
        return out

    def close(self) -> None:
        if self.pool is not None:
            for run in self.runs.values():
                run.cancel()
            self.pool.shutdown(wait=True)


@pytest.fixture(scope='module')
def smoke(request, tmp_path_factory):
    selected = [item.name[len('test_'):] + '.py' for item in request.session.items
                if item.module is request.module]
    selected = [s for s in selected if s in SCRIPTS and has_smoke_size(s)]
    ahead = 'PYTEST_XDIST_WORKER' not in os.environ and len(selected) > 1
    runs = SmokeRuns(lambda s: str(tmp_path_factory.mktemp(s[:-3])), selected, ahead)
    yield runs
    runs.close()


def load(path: str) -> dict:
    assert os.path.isfile(path), f'{path} was not written'
    with open(path) as f:
        return json.load(f)


def has(d: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in d]
    assert not missing, f'missing {missing} in {sorted(d)}'


def test_precondition_ffhq1024(smoke):
    r = load(smoke.output('precondition_ffhq1024.py'))
    has(r, 'device', 'batch', 'image_size', 'sampler_seconds_per_iteration', 'preconditioner')
    assert r['smoke'] and r['image_size'] < 1024
    has(r['sampler_seconds_per_iteration'], 'none', 'pds', 'pds_over_baseline')
    for masks in ('freq', 'freq+space'):
        row = r['preconditioner'][masks]
        has(row, 'ours_seconds', 'complex_seconds', 'speedup', 'max_abs_difference')
        assert row['max_abs_difference'] < 1e-4  # rfft2 path == the reference's complex one


def test_population_fd(smoke):
    r = load(smoke.output('population_fd.py'))
    has(r, 'floor_50k', 'nfe_to_floor', 'rows', 'steps')
    assert r['smoke'] and {row['method'] for row in r['rows']} == set(r['nfe_to_floor'])
    assert all(row['frechet_distance'] >= 0 for row in r['rows'])


def test_ode_samplers(smoke):
    r = load(smoke.output('ode_samplers.py'))
    has(r, 'floor_50k', 'nfe_to_floor', 'rows', 'image_size')
    assert r['smoke'] and {row['method'] for row in r['rows']} == set(r['nfe_to_floor'])
    assert {row['prior'] for row in r['rows']} == {'score_sde', 'mean', 'gaussian'}
    assert all(row['frechet_distance'] >= 0 and row['nfe'] > 0 for row in r['rows'])


def test_adaptive_solvers(smoke):
    r = load(smoke.output('adaptive_solvers.py'))
    has(r, 'image_size', 'samples', 'rows')
    assert r['smoke'] and {row['solver'] for row in r['rows']} == {
        'dopri5', 'adaptive_sde', 'adaptive_sde_pds'}
    for row in r['rows']:
        has(row, 'nfe_mean', 'nfe_max', 'frechet_distance_unbiased', 'standard_error')
        assert 0 < row['nfe_mean'] <= row['nfe_max'] and row['standard_error'] > 0


def test_ode_corrector(smoke):
    r = load(smoke.output('ode_corrector.py'))
    has(r, 'image_size', 'samples', 'snr', 'rows')
    assert r['smoke'] and {row['solver'] for row in r['rows']} == {'edm_heun', 'dpm_solver_2m'}
    assert {row['corrector'] for row in r['rows']} >= {'none', 'langevin'}
    for row in r['rows']:
        has(row, 'budget', 'steps', 'nfe', 'frechet_distance', 'frechet_distance_se')
        within = row['corrector'] != 'langevin_same_n'  # that row runs the plain row's N
        assert row['nfe'] > 0 and (row['nfe'] <= row['budget'] or not within)
        assert row['frechet_distance_se'] > 0
        assert ('population_fd' in row) == (row['corrector'] == 'none')


def test_gpu_check(smoke):
    r = load(smoke.output('gpu_check.py'))
    has(r, 'device', 'jax', 'cases', 'wall_seconds')
    assert len(r['cases']) == 1
    case = r['cases'][0]
    assert 'error' not in case, case.get('error')
    has(case, 'baseline_compile_seconds', 'baseline_seconds_per_nfe', 'pds_seconds_per_nfe',
        'pds_ops_seconds_per_iteration', 'pds_overhead_fraction', 'pds_sampler_over_baseline',
        'peak_bytes_in_use')
    assert case['baseline_nfe'] == 2  # reverse diffusion + Langevin, 1 iteration


def test_network_cpu(smoke):
    r = load(smoke.output('network_cpu.py'))
    has(r, 'device', 'cpu_count', 'cases')
    assert len(r['cases']) == 1
    has(r['cases'][0], 'baseline_seconds_per_nfe', 'pds_seconds_per_nfe',
        'pds_ops_seconds_per_iteration', 'pds_ops_fraction_of_iteration',
        'pds_sampler_over_baseline', 'wall_seconds')


def test_reference_timing(smoke):
    r = load(smoke.output('reference_timing.py'))
    has(r, 'machine', 'cpu_count', 'jax', 'torch', 'cases')
    case = r['cases'][0]
    assert 'reference' not in case and 'speedup' not in case  # no --reference-dir given
    has(case['ours'], 'parameters', 'forward_compile_seconds', 'pc_compile_seconds',
        'pc_pds_compile_seconds', 'seconds_per_nfe', 'seconds_per_iteration',
        'seconds_per_iteration_pds', 'peak_rss_bytes', 'seconds')
    assert case['ours']['pc_nfe_per_iteration'] == 2  # reverse diffusion + Langevin


def test_train_step_gpu(smoke):
    r = load(smoke.output('train_step_gpu.py'))
    has(r, 'config', 'jax', 'rows')
    assert r['rows'], r
    for row in r['rows']:
        assert 'error' not in row, row.get('error')
        has(row, 'grad_shards', 'seconds_per_step', 'steps_per_second', 'final_loss',
            'compile_plus_first_call_seconds', 'time_vs_G1')


def test_host_memory(smoke):
    out = smoke.output('host_memory.py')
    r = load(os.path.join(out, 'host_memory.json'))
    has(r, 'machine', 'runs', 'summary', 'overrides')
    assert [run['rounds'] for run in r['runs']] == [1, 2]
    for run in r['runs']:
        has(run, 'peak_rss_mib', 'wall_seconds', 'rss_series', 'peak_rss_round_loop_mib')
        assert run['metrics']['num_samples'] == run['num_samples']
    has(r['summary'], 'peak_growth_mib', 'flat')
    assert os.path.getsize(os.path.join(out, 'host_memory.png')) > 0


def test_inception_throughput(smoke):
    r = load(smoke.output('inception_throughput.py'))
    has(r, 'batch', 'images_per_s', 'median_batch_s', 'compile_plus_first_call_s', 'resize')


def test_train_gaussian_field(smoke):
    r = load(smoke.output('train_gaussian_field.py'))
    has(r, 'train_seconds', 'score_error_curve', 'noise_floor', 'frechet_distance',
        'loss_curve')
    assert r['score_error_curve'] and r['loss_curve']
    has(r['score_error_curve'][-1]['relative_score_error'], '0.02', '10.0')
    has(r['frechet_distance'][0], 'none', 'pds', 'pds_over_baseline')


def test_field16_exact_vs_learned(smoke):
    r = load(smoke.output('field16_exact_vs_learned.py'))
    has(r, 'bench', 'noise_floor', 'traces', 'exact_capped', 'score_band_errors',
        'score_scale_response', 'total_seconds')
    has(r['bench'][0], 'exact_baseline', 'exact_pds', 'learned_baseline', 'learned_pds')
    assert {(t['score'], t['method']) for t in r['traces']} == {
        (s, m) for s in ('exact', 'learned') for m in ('none', 'pds')}
    has(r['traces'][0]['steps'][0], 'corrector_eps', 'fd_to_marginal', 'energy_ratio')


def test_cpu_layout_check(smoke):
    r = load(smoke.output('cpu_layout_check.py'))
    has(r, '1x4', '2x2', 'identical', 'differing_leaves', 'total_leaves', 'max_abs_difference')
    assert r['smoke'] and r['total_leaves'] > 10
    # equal, or apart by reduction-order rounding of one Adam step, far below the step itself
    # (lr 1e-3 per parameter; a wrong gradient share would move parameters by about that)
    assert r['identical'] or r['max_abs_difference'] < 1e-4, r
    # the same fusion partitions (4 or more cores) compile the same reductions: bit for bit
    assert r['identical'] or r['1x4']['partitions'] != r['2x2']['partitions'], r


def test_photo_swd_floor(smoke):
    r = load(smoke.output('photo_swd_floor.py'))
    has(r, 'sizes', 'swd_settings', 'rows', 'se_check')
    has(r['se_check'], 'values', 'ses', 'spread', 'mean_se')
    assert r['smoke'] and {row['comparison'] for row in r['rows']} == {
        'floor', 'train_vs_A', 'A_vs_A', 'region_floor', 'region_train_vs_A'}
    for row in r['rows']:
        has(row, 'n', 'swd', 'se', 'levels', 'level_sizes')
        assert row['swd'] > 0 and row['se'] > 0


def test_likelihood_exact(smoke):
    r = load(smoke.output('likelihood_exact.py'))
    has(r, 'field', 'mixture', 'prior_kl_field', 'samples')
    assert r['smoke'] and r['field'] and r['mixture']
    for row in r['field'] + r['mixture']:
        has(row, 'probes', 'rtol', 'error_mean', 'error_se', 'error_max_abs', 'nfe_mean')
        # the exact divergence at rtol 1e-3 stays within 1e-2 bits/dim of the closed form
        assert row['probes'] or row['error_max_abs'] < 1e-2, row


def test_every_script_has_a_smoke_test():
    scripts = {f for f in os.listdir(BENCHMARKS) if f.endswith('.py')} - NOT_SCRIPTS
    tested = {name[len('test_'):] + '.py' for name in globals() if name.startswith('test_')}
    assert scripts <= tested, f'no smoke test for {sorted(scripts - tested)}'
    assert scripts <= set(SCRIPTS), f'not in SCRIPTS: {sorted(scripts - set(SCRIPTS))}'


@pytest.mark.parametrize('script', sorted(
    f for f in os.listdir(BENCHMARKS)
    if f.endswith('.py') and f not in NOT_SCRIPTS))
def test_script_has_a_smoke_size(script):
    assert has_smoke_size(script), f'{script} has no --smoke size'
