"""``--config`` file of the multi-process training test: train_driver's tiny NCSN++, 4 steps."""

from tests.pds.training.train_driver import tiny_config


def get_config():
    config = tiny_config()
    t = config.training
    t.n_iters, t.n_jitted_steps = 4, 2
    t.log_freq = t.eval_freq = t.snapshot_freq_for_preemption = 2
    t.snapshot_freq = 4
    return config
