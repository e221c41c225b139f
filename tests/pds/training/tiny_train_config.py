"""``--config`` file of the multi-process training test: configs/tiny/ncsnpp_train.py, 4 steps,
one per compiled call (half the compile time of two; the k-step scan is the same code on every
layout, and tests/pds/training/test_train.py trains through it)."""

from configs.tiny.ncsnpp_train import get_config as tiny_config


def get_config():
    config = tiny_config()
    t = config.training
    t.n_iters, t.n_jitted_steps = 4, 1
    t.log_freq = t.eval_freq = t.snapshot_freq_for_preemption = 2
    t.snapshot_freq = 4
    return config
