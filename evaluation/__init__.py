"""Sample-quality metrics: FID / Inception Score / KID on the FID Inception network."""
