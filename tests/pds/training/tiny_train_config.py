"""``--config`` file of the multi-process training test: configs/tiny/ncsnpp_train.py, 4 steps."""

from configs.tiny.ncsnpp_train import get_config as tiny_config


def get_config():
    config = tiny_config()
    t = config.training
    t.n_iters, t.n_jitted_steps = 4, 2
    t.log_freq = t.eval_freq = t.snapshot_freq_for_preemption = 2
    t.snapshot_freq = 4
    return config
