"""Alias of :mod:`configs.ve.ffhq_ncsnpp_continuous` (FFHQ 1024, NCSN++ continuous)."""

import ml_collections

from configs.ve import ffhq_ncsnpp_continuous


def get_config() -> ml_collections.ConfigDict:
    return ffhq_ncsnpp_continuous.get_config()
