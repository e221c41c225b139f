"""16x16 RGB patches of the scikit-image photographs (configs/default_photo_configs.py).

The network block is a provisional CPU-sized continuous VE NCSN++ (the 16x16 field network's
shape); its training settings are to be fixed when it is trained.
Statistics for the PDS masks:
``python main.py --config=configs/photo/photos_16.py --workdir=runs/photos_16 --mode=stats``.
"""

import ml_collections

from configs import archs
from configs.default_photo_configs import get_default_configs


def get_config() -> ml_collections.ConfigDict:
    config = get_default_configs(16)
    config.training.sde = 'vesde'
    config.training.continuous = True
    archs.ve_sampling(config.sampling)
    archs.ncsnpp(config.model, nf=32, ch_mult=(1, 2), num_res_blocks=1, fir=False,
                 embedding_type='fourier', ema_rate=0.999)
    config.model.attn_resolutions = ()
    config.training.batch_size = 16
    config.training.snapshot_sampling = False
    config.optim.lr = 1e-3
    config.optim.warmup = 200
    return config
