"""score_sde experiment configs (subvp)."""
