"""Rendering of results: scorecard.html, junit.xml and summary.md (pure functions of results)."""

from evalsuite.report.render import render_junit, render_scorecard, render_summary, write_reports

__all__ = ["render_junit", "render_scorecard", "render_summary", "write_reports"]
