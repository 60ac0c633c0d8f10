"""Interactive explainer pages: self-contained HTML files that show how an op of the model works.

:mod:`maskrt.explain.roi_align` writes a page that compares RoI Pool and RoI Align on real features of the
embedded ``shapes`` model, computed live in the browser with exactly :mod:`maskrt.ops`' semantics.
"""
