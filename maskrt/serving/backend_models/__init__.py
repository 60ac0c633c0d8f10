"""Python-backend ``model.py`` files that maskrt copies into Triton model repositories.

They run inside Triton's stub interpreter, not in maskrt's process: maskrt never imports them. ``served.py``
is the one model of ``maskrt serve`` (it hands batches to :mod:`maskrt.serving.worker`); ``preprocess.py``,
``core.py`` and ``postprocess.py`` are the python steps of the ensemble that ``maskrt triton`` writes.
"""
