"""experiments stage."""

__all__: list[str] = []
