"""explain stage."""

__all__: list[str] = []
