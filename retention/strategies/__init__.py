"""Strategies: what to do about each customer (risk bands; recommendations, offers, tiers next)."""

from retention.strategies._bands import HIGH_RISK_BELOW, RISK_BANDS, risk_band

__all__ = ["HIGH_RISK_BELOW", "RISK_BANDS", "risk_band"]
