"""data stage."""

__all__: list[str] = []
