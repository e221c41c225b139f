"""Likelihood through the probability-flow ODE (Song et al. 2021, arXiv:2011.13456,
appendix D.2): the augmented ODE and its divergence (:mod:`.divergence`, :mod:`.ode`), the
prior's log-density (:mod:`.priors`), the compiled program (:mod:`.program`), bits/dim
conventions (:mod:`.units`), closed forms for the exact targets (:mod:`.closed_form`) and a
likelihood run in resumable rounds (:mod:`.run`)."""
