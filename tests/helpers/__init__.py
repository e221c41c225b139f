"""What the tests share: the repository root and the environment of test subprocesses
(``paths``), launching ``main.py`` jobs (``multiprocess``), configs and drivers the tests run
in subprocesses (``tiny_train_config``, ``train_driver``, ``device_invariance_check``), test
solvers (``variable_steps``) and the golden runs (``golden_cases``; ``python -m
tests.helpers.golden_record`` re-records tests/golden/golden.npz)."""
