"""Workflows: ingest, train, score, backtest, explain. The only code the CLI and the API call.

(DESIGN.md drew this as one ``workflows.py``; it is a package with one private module per area so
that each area stays small. The public names are re-exported here.)
"""

__all__: list[str] = []
