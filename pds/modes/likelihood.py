"""``--mode=likelihood``: per-example bits/dim of a data split through the probability-flow
ODE (:mod:`pds.likelihood.run`: the examples, rounds, outputs and resuming).

Fields (``eval.*``; score_sde's names where it has them): ``bpd_dataset`` ('train' or
'test'), ``num_samples`` examples in rounds of ``batch_size``, ``bpd_num_probes`` (0: the
exact divergence, D JVPs per evaluation; k >= 1: Hutchinson with k probes of ``bpd_probe``,
'rademacher' or 'gaussian'), ``bpd_solver`` ('dopri5' with ``bpd_rtol``, ``bpd_atol``,
``bpd_max_steps``; 'euler' or 'heun' on ``bpd_steps`` intervals of the ``bpd_grid`` kind),
``bpd_eps`` (the ODE's start time, score_sde's 1e-5); the prior is ``sampling.prior``.
Writes ``<workdir>/likelihood/``: round files, ``examples_<name>.npz`` and
``report_<name>.json`` / ``.md``. With ``--overwrite`` earlier outputs are set aside and come
back if the run fails (:mod:`pds.storage.replace`).
"""

from __future__ import annotations

import contextlib

from pds.likelihood import run as likelihood
from pds.storage import outputs, replace


def run(config, workdir: str, overwrite: bool = False) -> dict:
    """The report (on the main process; {} on the others). Input errors are raised before
    any computation. Without ``overwrite`` a run resumes at its missing rounds."""
    outputs.prepare_workdir(workdir)
    replace.check_not_interrupted(workdir)
    setup = likelihood.setup_from_config(config, workdir)
    paths = likelihood.output_paths(workdir, setup.name)
    with (replace.replacing(workdir, list(paths), True, tag=f'likelihood:{setup.name}')
          if overwrite else contextlib.nullcontext()):
        report, per_example = likelihood.evaluate(setup, workdir)
        if report:
            _, examples, report_json, report_md = paths
            outputs.write_npz(examples, **per_example)
            outputs.write_json(report_json, report)
            outputs.write_text(report_md, likelihood.report_markdown(report))
    return report
