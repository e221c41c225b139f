"""32x32 RGB patches of the scikit-image photographs (configs/default_photo_configs.py).

The network block is a provisional CPU-sized continuous VE NCSN++ (the 16x16 field network's
shape, one more resolution); its training settings are to be fixed when it is trained.
Statistics for the PDS masks:
``python main.py --config=configs/photo/photos_32.py --workdir=runs/photos_32 --mode=stats``.
"""

import ml_collections

from configs.default_photo_configs import cpu_ncsnpp, get_default_configs


def get_config() -> ml_collections.ConfigDict:
    return cpu_ncsnpp(get_default_configs(32), ch_mult=(1, 2, 2))
