"""score_sde experiment configs (ve)."""
