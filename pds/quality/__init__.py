"""Measuring sample quality: Frechet distances to an exact target (population or sampled),
the sampler comparison's presets and reports, Inception features and FID/IS/KID of images,
and the number formatting and figures the reports share. May import every package before
it (``pds.experiment`` included), never ``pds.modes``."""
