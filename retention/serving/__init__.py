"""Serving: CLI, REST API and HTML report. May import every other stage."""

__all__: list[str] = []
