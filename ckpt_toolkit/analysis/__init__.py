"""Analyses: pure functions over tables (no model is ever loaded here).

* :mod:`ckpt_toolkit.analysis.taxonomy` — capability categories.
* :mod:`ckpt_toolkit.analysis.dynamics` — capability dynamics over pretraining (paper 2).
* :mod:`ckpt_toolkit.analysis.pairwise` — proxies vs fine-tuning outcomes (paper 1).

Submodules are imported on demand (no eager imports), so importing one never pulls in the
heavier dependencies of another.
"""
