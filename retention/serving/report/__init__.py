"""HTML reports: self-contained pages (Jinja2 + Plotly, plotly.js inlined, no network).

:func:`render_backtest_report` writes the report of a backtest (metrics, ROC and precision-recall
curves, calibration, gains by decile, score distribution, cohort retention). Later stages add
their own blocks with one :class:`ReportSection` each, passed as ``sections=[...]``.
"""

from retention.serving.report._backtest import (
    METRIC_COLUMNS,
    backtest_sections,
    render_backtest_report,
)
from retention.serving.report._render import render_report
from retention.serving.report._section import ReportSection

__all__ = [
    "METRIC_COLUMNS",
    "ReportSection",
    "backtest_sections",
    "render_backtest_report",
    "render_report",
]

from retention.serving.report._explain import (
    explain_sections,
    render_explain_report,
)

__all__ += ["explain_sections", "render_explain_report"]

from retention.serving.report._experiment import (  # noqa: E402
    experiment_sections,
    render_experiment_report,
)

__all__ += ["experiment_sections", "render_experiment_report"]

from retention.serving.report._promote import (  # noqa: E402
    plan_sections,
    render_plan_report,
    render_uplift_report,
    uplift_sections,
)

__all__ += ["plan_sections", "render_plan_report", "render_uplift_report", "uplift_sections"]

from retention.serving.report._monitor import (  # noqa: E402
    monitor_sections,
    render_monitor_report,
)

__all__ += ["monitor_sections", "render_monitor_report"]
