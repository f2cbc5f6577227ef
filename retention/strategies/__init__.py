"""strategies stage."""

__all__: list[str] = []
