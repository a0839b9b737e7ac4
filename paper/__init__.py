"""The paper's reproduction: the grid of training runs (``reproduce``), Table I and the figures
(``report``), and the paper's published numbers and the report's prose (``paper_results.yaml``).
Research tooling on top of ``mt_specialize``; not installed with it. Run from the repository root:
``python -m paper --help``."""
