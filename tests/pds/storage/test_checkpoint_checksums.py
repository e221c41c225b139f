"""Sampling checkpoints carry sha256 sums (issue 29): a flipped byte in any file of a step is
refused with one ConfigError naming the file (or the parameter), a checkpoint written before
checksums existed still loads, with one warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs.tiny.ncsnpp_train import get_config
from models.registry import abstract_variables
from pds.runtime.errors import ConfigError
from pds.storage import checksums, sampling_checkpoints
from tests.helpers.paths import ROOT, jax_env


def _variables(config, seed: int = 0):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda a: rng.standard_normal(a.shape).astype(np.float32),
        jax.tree_util.tree_map(lambda a: a, abstract_variables(config)))


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    """A step-3 sampling checkpoint of the tiny NCSN++ with random weights."""
    config = get_config()
    ckpt_dir = str(tmp_path_factory.mktemp('ckpt') / 'checkpoints')
    variables = _variables(config)
    sampling_checkpoints.save_variables(ckpt_dir, variables, 3, metadata={'source': 'test'})
    return config, ckpt_dir, variables


def _copy(saved, tmp_path):
    import shutil

    config, ckpt_dir, variables = saved
    out = str(tmp_path / 'checkpoints')
    shutil.copytree(ckpt_dir, out)
    return config, out, variables


def _read(path: str) -> bytes:
    with open(path, 'rb') as f:
        return f.read()


def _meta(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _flip(path: str, at: int | None = None) -> None:
    data = bytearray(_read(path))
    data[len(data) // 2 if at is None else at] ^= 0x01
    with open(path, 'wb') as f:
        f.write(data)


def test_save_records_leaf_sums_and_a_manifest_of_every_file(saved):
    config, ckpt_dir, variables = saved
    step_dir = os.path.join(ckpt_dir, '3')
    meta = sampling_checkpoints.read_metadata(ckpt_dir, 3)
    plain = {k: dict(v) for k, v in variables.items()}
    assert meta['checksums'] == checksums.tree_checksums(plain)
    kernel = next(k for k in meta['checksums'] if k.endswith('kernel'))
    path = kernel.split('/')
    leaf = variables
    for key in path:
        leaf = leaf[key]
    assert meta['checksums'][kernel] == checksums.leaf_checksum(leaf)
    manifest = checksums.read_manifest(step_dir)
    on_disk = sorted(os.path.relpath(os.path.join(d, f), step_dir)
                     for d, _, files in os.walk(step_dir) for f in files)
    assert sorted([*manifest, checksums.MANIFEST]) == on_disk
    restored = sampling_checkpoints.restore_variables(ckpt_dir, config, 3)
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(variables),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


@pytest.mark.slow  # one restore per file: about 13 s
def test_a_flipped_byte_in_any_file_is_refused_naming_it(saved, tmp_path):
    config, ckpt_dir, _ = _copy(saved, tmp_path)
    step_dir = os.path.join(ckpt_dir, '3')
    files = sorted(checksums.read_manifest(step_dir))
    assert len(files) >= 5
    for rel in files:
        path = os.path.join(step_dir, rel)
        before = _read(path)
        _flip(path)
        with pytest.raises(ConfigError) as err:
            sampling_checkpoints.restore_variables(ckpt_dir, config, 3)
        assert rel in str(err.value) and 'damaged' in str(err.value)
        assert '--mode=convert --overwrite' in str(err.value)
        with open(path, 'wb') as f:
            f.write(before)
    sampling_checkpoints.restore_variables(ckpt_dir, config, 3)  # whole again


def test_a_changed_leaf_with_a_rewritten_manifest_is_named_by_its_parameter(saved, tmp_path):
    """The per-leaf sums catch what tensorstore decodes, even when the manifest was rewritten
    over the damaged files (a bad copy that recomputed it)."""
    config, ckpt_dir, _ = _copy(saved, tmp_path)
    step_dir = os.path.join(ckpt_dir, '3')
    meta_file = os.path.join(step_dir, 'meta', 'metadata')
    meta = _meta(meta_file)
    name = sorted(meta['checksums'])[0]
    meta['checksums'][name] = checksums.leaf_checksum(np.zeros(1))
    with open(meta_file, 'w') as f:
        json.dump(meta, f)
    checksums.write_manifest(step_dir)
    with pytest.raises(ConfigError, match=f'parameter {name} matching its recorded sha256'):
        sampling_checkpoints.restore_variables(ckpt_dir, config, 3)


def _strip_checksums(step_dir: str) -> None:
    """The step as written before checksums existed: no manifest, no leaf sums in meta."""
    os.remove(os.path.join(step_dir, checksums.MANIFEST))
    meta_file = os.path.join(step_dir, 'meta', 'metadata')
    meta = _meta(meta_file)
    del meta['checksums']
    with open(meta_file, 'w') as f:
        json.dump(meta, f)


def test_a_checkpoint_without_checksums_loads_with_one_warning(saved, tmp_path, caplog):
    config, ckpt_dir, variables = _copy(saved, tmp_path)
    _strip_checksums(os.path.join(ckpt_dir, '3'))
    sampling_checkpoints._warn_unverified.cache_clear()
    with caplog.at_level('WARNING'):
        for _ in range(2):
            restored = sampling_checkpoints.restore_variables(ckpt_dir, config, 3)
    warned = [r for r in caplog.records if 'load unverified' in r.getMessage()]
    assert len(warned) == 1
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(variables),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_one_record_without_the_other_is_refused(saved, tmp_path):
    config, ckpt_dir, _ = _copy(saved, tmp_path)
    os.remove(os.path.join(ckpt_dir, '3', checksums.MANIFEST))
    with pytest.raises(ConfigError, match=f'its {checksums.MANIFEST}'):
        sampling_checkpoints.restore_variables(ckpt_dir, config, 3)


@pytest.mark.slow
def test_sample_mode_refuses_a_flipped_checkpoint_in_one_line(saved, tmp_path):
    """The issue's probe through main.py: exit 2, one line naming the file, nothing written."""
    _, ckpt_dir, _ = _copy(saved, tmp_path / 'w')
    step_dir = os.path.join(ckpt_dir, '3')
    largest = max(checksums.read_manifest(step_dir),
                  key=lambda rel: os.path.getsize(os.path.join(step_dir, rel)))
    _flip(os.path.join(step_dir, largest))
    before = sorted(os.listdir(tmp_path / 'w'))
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'main.py'),
         f'--config={os.path.join(ROOT, "configs/tiny/ncsnpp_train.py")}',
         f'--workdir={tmp_path / "w"}', '--mode=sample', '--config.eval.num_samples=4',
         '--config.eval.batch_size=4', '--config.sampling.steps=2'],
        capture_output=True, text=True, timeout=300, env=jax_env(1))
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith('error:')]
    assert len(lines) == 1 and 'Traceback' not in res.stderr
    assert largest in lines[0]
    assert sorted(os.listdir(tmp_path / 'w')) == before
