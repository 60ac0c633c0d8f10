"""Views of a :class:`~maskrt.profiling.report.LatencyReport`: the terminal, Markdown and one self-contained HTML
page (the JSON form is the report itself: :func:`maskrt.profiling.report.write_json`)."""

from maskrt.profiling.render.html import html_table, to_html, write_html
from maskrt.profiling.render.markdown import to_markdown, write_markdown
from maskrt.profiling.render.terminal import print_report

__all__ = ["html_table", "print_report", "to_html", "to_markdown", "write_html", "write_markdown"]
