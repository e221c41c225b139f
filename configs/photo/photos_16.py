"""16x16 RGB patches of the scikit-image photographs (configs/default_photo_configs.py), and
the network trained on them here: a continuous VE NCSN++ with nf = 16 at 16, 8 and 4 pixels
(315k parameters, about 1 ms per example per evaluation on 2 CPU cores), 12000 steps of
batch 32.

Statistics for the PDS masks:
``python main.py --config=configs/photo/photos_16.py --workdir=runs/photos_16 --mode=stats``.
Training: ``python main.py --config=configs/photo/photos_16.py --workdir=runs/photos_16
--mode=train`` (docs/photos.md gives its cost and the committed export).
"""

import ml_collections

from configs.default_photo_configs import cpu_ncsnpp, get_default_configs


def get_config() -> ml_collections.ConfigDict:
    config = cpu_ncsnpp(get_default_configs(16), ch_mult=(1, 2, 2), nf=16)
    config.training.n_iters = 12000
    return config
