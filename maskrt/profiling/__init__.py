"""Latency, FPS and memory of any runner: :mod:`~maskrt.profiling.measure` (``profile``, ``bench``) fills a
:class:`~maskrt.profiling.report.LatencyReport` (the format, with every raw time), :mod:`~maskrt.profiling.stats`
defines the statistics, :mod:`~maskrt.profiling.render` draws the report."""
