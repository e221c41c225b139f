"""16x16 RGB patches of the scikit-image photographs (configs/default_photo_configs.py).

The network block is a provisional CPU-sized continuous VE NCSN++ (the 16x16 field network's
shape); its training settings are to be fixed when it is trained.
Statistics for the PDS masks:
``python main.py --config=configs/photo/photos_16.py --workdir=runs/photos_16 --mode=stats``.
"""

import ml_collections

from configs.default_photo_configs import cpu_ncsnpp, get_default_configs


def get_config() -> ml_collections.ConfigDict:
    return cpu_ncsnpp(get_default_configs(16), ch_mult=(1, 2))
