"""``--config`` file of the multi-process training test: configs/tiny/ncsnpp_train.py without
residual blocks outside the middle, 4 steps, one per compiled call (the k-step scan is the same
code on every layout, and tests/pds/training/test_train.py trains through it): about half the
compile time."""

from configs.tiny.ncsnpp_train import get_config as tiny_config


def get_config():
    config = tiny_config()
    config.model.num_res_blocks = 0
    t = config.training
    t.n_iters, t.n_jitted_steps = 4, 1
    t.log_freq = t.eval_freq = t.snapshot_freq_for_preemption = 2
    t.snapshot_freq = 4
    return config
