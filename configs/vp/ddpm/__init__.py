"""score_sde experiment configs (vp/ddpm)."""
