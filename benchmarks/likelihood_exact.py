"""Bits/dim through the probability-flow ODE against the closed form (--mode=likelihood, exact
scores): the 16x16 Gaussian field (D = 768) and the 32x32 mixture of fields (D = 3072).

Per example the ODE's bits/dim should equal the closed form of the marginal at eps plus the
prior's mismatch -m / (D ln 2), m = log pi(x(T)) - log p_T(x(T)) (pds/likelihood/closed_form.py);
the difference is the solver's and the divergence estimator's error. Cells (each one
--mode=likelihood run on the eval split, VE, score_sde's prior N(0, sigma_max^2 I)):

- the field, exact divergence, dopri5 at rtol = atol = 1e-3, 1e-4, 1e-5: the error's max
  |.|, mean and standard error, NFE per example;
- the field, Hutchinson (Rademacher) with 1, 4 and 16 probes at rtol 1e-5: the error's mean
  and standard error (unbiased: |mean| < 3 SE; SE ~ 1 / sqrt(probes));
- the mixture: Hutchinson with 1 and 4 probes, and the exact divergence on fewer examples
  (3072 JVPs per evaluation).

Also the prior's KL to the field's marginal at T in closed form (nats/image, bits/dim).

    PYTHONPATH=. python benchmarks/likelihood_exact.py [--samples 256] [--batch 256]
        [--mixture-exact 16] [--out benchmarks/results/likelihood_exact.json] [--smoke]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.smoke import add_smoke_flag, load_config, smoke_setup, write_report

OUT = 'benchmarks/results/likelihood_exact.json'
FIELD, MIXTURE = 'configs/analytic/field_16.py', 'configs/analytic/mixture_32.py'


def cell(config, samples: int, batch: int, probes: int, rtol: float) -> dict:
    """One --mode=likelihood run; the per-example error against the closed form."""
    from pds.modes import run_mode

    cfg = copy.deepcopy(config)
    cfg.eval.num_samples, cfg.eval.batch_size = samples, batch
    cfg.eval.bpd_num_probes, cfg.eval.bpd_rtol, cfg.eval.bpd_atol = probes, rtol, rtol
    cfg.sampling.progress_every = -1
    with tempfile.TemporaryDirectory() as workdir:
        t0 = time.perf_counter()
        rep = run_mode('likelihood', cfg, workdir)
        seconds = time.perf_counter() - t0
        with np.load(os.path.join(workdir, 'likelihood', 'examples_exact.npz')) as f:
            ex = {k: f[k] for k in f.files}
    d = rep['dims']
    closed = -ex['closed_form_logp'] / (d * math.log(2))
    mismatch = -ex['prior_mismatch'] / (d * math.log(2))
    err = ex['bpd'] - closed - mismatch
    return {'probes': probes, 'rtol': rtol, 'samples': samples,
            'bpd': rep['bpd'], 'closed_form_bpd': rep['closed_form']['bpd'],
            'prior_mismatch_bpd': rep['closed_form']['prior_mismatch_bpd'],
            'error_mean': float(err.mean()),
            'error_se': float(err.std(ddof=1) / math.sqrt(len(err))),
            'error_max_abs': float(np.abs(err).max()),
            'error_first': err[:4].tolist(), 'nfe_mean': rep['nfe']['mean'],
            'nfe_max': rep['nfe_max'], 'prior_kl': rep['closed_form'].get('prior_kl'),
            'seconds': round(seconds, 2),
            'compile_seconds': rep['timing'].get('compile_seconds')}


def show(label: str, row: dict) -> None:
    print(f"{label:>8} probes={row['probes']:<3d} rtol={row['rtol']:<6g} error "
          f"{row['error_mean']:+.2e} +- {row['error_se']:.1e} (max {row['error_max_abs']:.1e})"
          f"  NFE {row['nfe_mean']:.1f} (max {row['nfe_max']})  {row['seconds']} s", flush=True)


def run(samples: int, batch: int, mixture_exact: int, smoke: bool) -> dict:
    field, mixture = load_config(FIELD), load_config(MIXTURE)
    rtols, probes = (1e-3, 1e-4, 1e-5), (1, 4, 16)
    if smoke:
        field.data.image_size = mixture.data.image_size = 4
        samples, batch, mixture_exact, rtols, probes = 8, 8, 8, (1e-3,), (1,)
    out = {'samples': samples, 'smoke': smoke, 'field': [], 'mixture': []}
    for rtol in rtols:
        out['field'].append(cell(field, samples, batch, 0, rtol))
        show('field', out['field'][-1])
    for p in probes:
        out['field'].append(cell(field, samples, batch, p, rtols[-1]))
        show('field', out['field'][-1])
    for p in probes[:2]:
        out['mixture'].append(cell(mixture, samples, batch, p, rtols[-1]))
        show('mixture', out['mixture'][-1])
    out['mixture'].append(cell(mixture, mixture_exact, min(batch, mixture_exact), 0,
                               rtols[-1]))
    show('mixture', out['mixture'][-1])
    out['prior_kl_field'] = out['field'][0]['prior_kl']
    return out


def markdown(r: dict) -> str:
    lines = ['| target | divergence | rtol | examples | error mean +- SE (bits/dim) | '
             'max abs error | NFE mean (max) | seconds |', '|---|---|---:|---:|---|---:|---|---:|']
    for target in ('field', 'mixture'):
        for row in r[target]:
            div = 'exact' if row['probes'] == 0 else f"Hutchinson x{row['probes']}"
            lines.append(f"| {target} | {div} | {row['rtol']:g} | {row['samples']} | "
                         f"{row['error_mean']:+.2e} +- {row['error_se']:.1e} | "
                         f"{row['error_max_abs']:.1e} | {row['nfe_mean']:.1f} "
                         f"({row['nfe_max']}) | {row['seconds']} |")
    kl = r['prior_kl_field']
    lines += ['', f"Field: prior KL(p_T, N(0, sigma_max^2 I)) = {kl['nats_per_image']:.4g} "
              f"nats/image = {kl['bpd']:.2e} bits/dim (closed form).", '']
    return '\n'.join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--samples', type=int, default=256)
    p.add_argument('--batch', type=int, default=256)
    p.add_argument('--mixture-exact', type=int, default=16)
    p.add_argument('--out', default=OUT)
    add_smoke_flag(p)
    args = p.parse_args()
    if args.smoke:
        smoke_setup()
    result = run(args.samples, args.batch, args.mixture_exact, args.smoke)
    write_report(args.out, result, markdown(result))


if __name__ == '__main__':
    main()
