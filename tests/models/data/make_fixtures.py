"""Make the small BTYD fixture of Online Retail (run once; the CSV is committed).

    .venv/bin/python tests/models/data/make_fixtures.py

Online Retail (UCI id 352, CC BY 4.0, Chen, Sain & Guo 2012), bundled in retention/data/files:
rows without CustomerID dropped, cancellations (InvoiceNo starting with "C") and lines of
negative or zero amount dropped, amount = Quantity x UnitPrice; RFM summary at cutoff 2011-09-10
in weeks with same-day purchases merged (rfm_summary's convention).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import retention.data
from retention.models._btyd import rfm_summary

HERE = Path(__file__).parent
CUTOFF = "2011-09-10"


def online_retail_events() -> pd.DataFrame:
    """Online Retail purchases as contract events."""
    raw = pd.read_parquet(Path(retention.data.__file__).parent / "files" / "online_retail.parquet")
    raw = raw[raw["CustomerID"].notna() & ~raw["InvoiceNo"].astype(str).str.startswith("C")]
    amount = raw["Quantity"] * raw["UnitPrice"]
    raw = raw[amount > 0]
    return pd.DataFrame(
        {
            "user_id": raw["CustomerID"].astype("int64").astype(str),
            "ts": pd.to_datetime(raw["InvoiceDate"]),
            "event_type": "purchase",
            "amount": (raw["Quantity"] * raw["UnitPrice"]).astype("float64"),
        }
    )


def main() -> None:
    summary = rfm_summary(online_retail_events(), CUTOFF, unit_days=7.0)
    out = summary.round({"recency": 6, "T": 6, "monetary_value": 4})
    out.to_csv(HERE / "online_retail_rfm_2011-09-10.csv")
    print(f"{len(out)} customers, {int((out['frequency'] > 0).sum())} repeaters")


if __name__ == "__main__":
    main()
