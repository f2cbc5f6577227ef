/* The retention dashboard: reads the service's JSON with the key from the login page and draws
   it with Plotly (served by the service itself: nothing is loaded from elsewhere). */
"use strict";

(function () {
  const KEY_NAME = "retention.apiKey";
  const PAGES = ["overview", "cohorts", "risk", "drivers", "customers", "plan", "experiments", "models"];
  const page = document.body.dataset.page;
  const app = document.getElementById("app");
  const COLORS = { high: "#c0392b", medium: "#e67e22", low: "#27ae60", churn: "#c0392b", retention: "#27ae60" };
  const PLOT_CONFIG = { displaylogo: false, responsive: true };
  const LAYOUT = { margin: { l: 60, r: 30, t: 40, b: 50 }, font: { family: "system-ui, sans-serif", size: 13 } };

  // ------------------------------------------------------------------------------ helpers
  function key() { return sessionStorage.getItem(KEY_NAME); }

  function toLogin() {
    const next = PAGES.includes(page) ? "?next=" + page : "";
    window.location.assign("/dashboard/login" + next);
  }

  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    opts.headers["X-API-Key"] = key();
    const res = await fetch(path, opts);
    if (res.status === 401) { sessionStorage.removeItem(KEY_NAME); toLogin(); throw new Error("signed out"); }
    const body = await res.json().catch(() => ({}));
    if (!res.ok) { const err = new Error(body.detail || ("HTTP " + res.status)); err.status = res.status; throw err; }
    return body;
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "text") node.textContent = v; else if (k === "cls") node.className = v; else node.setAttribute(k, v);
    }
    for (const child of [].concat(children || [])) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const num = new Intl.NumberFormat("en-GB", { maximumFractionDigits: 0 });
  const num2 = new Intl.NumberFormat("en-GB", { maximumFractionDigits: 2 });
  function fmt(v, kind) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (kind === "pct") return (100 * v).toFixed(1) + "%";
    if (kind === "2") return num2.format(v);
    if (typeof v === "number") return num.format(v);
    return String(v);
  }

  function showError(message) {
    const box = document.getElementById("error");
    box.textContent = message; box.hidden = false;
  }

  function showNote(text) {
    const note = document.getElementById("note");
    if (!text) return;
    note.textContent = text; note.hidden = false;
  }

  function done() { app.setAttribute("aria-busy", "false"); app.dataset.ready = "1"; }

  function card(label, value, testid) {
    return el("div", { cls: "card", "data-testid": testid }, [el("div", { cls: "label", text: label }), el("div", { cls: "value", text: value })]);
  }

  function table(columns, rows, testid) {
    const head = el("tr", {}, columns.map(([, label]) => el("th", { text: label })));
    const body = rows.map((r) => el("tr", {}, columns.map(([k, , kind]) => el("td", { text: fmt(r[k], kind) }))));
    return el("table", { "data-testid": testid }, [el("thead", {}, head), el("tbody", {}, body)]);
  }

  function plot(id, data, layout) {
    const div = el("div", { id: id, cls: "plot", "data-testid": id });
    app.append(div);
    return Plotly.newPlot(div, data, Object.assign({}, LAYOUT, layout), PLOT_CONFIG);
  }

  // ------------------------------------------------------------------------------ pages
  async function overview() {
    const part = await api("/stats/overview");
    const d = part.data;
    showNote(part.note);
    const ret = d.retention || {};
    app.append(el("div", { cls: "cards" }, [
      card("Customers", fmt(d.customers), "kpi-customers"),
      card("Purchasers", fmt(d.purchasers), "kpi-purchasers"),
      card("Orders", fmt(d.orders), "kpi-orders"),
      card("Revenue", fmt(d.revenue), "kpi-revenue"),
      card("Retained in " + (ret.horizon_days || 90) + " days after " + (ret.cutoff || "–"), fmt(ret.rate, "pct"), "kpi-retention"),
    ]));
    const m = d.monthly || [];
    if (m.length) {
      const months = m.map((r) => r.month);
      await plot("plot-trend", [
        { type: "bar", name: "active customers", x: months, y: m.map((r) => r.active), marker: { color: "#5b8def" } },
        { type: "bar", name: "new customers", x: months, y: m.map((r) => r.new), marker: { color: "#a9c4f5" } },
        { type: "scatter", mode: "lines+markers", name: "revenue (right axis)", x: months, y: m.map((r) => r.revenue), yaxis: "y2", line: { color: "#333" } },
      ], { title: { text: "Customers and revenue by month" + (d.partial_last_month ? " (last month partial)" : "") }, barmode: "group",
           yaxis: { title: { text: "customers" } }, yaxis2: { overlaying: "y", side: "right", showgrid: false }, legend: { orientation: "h" }, height: 420 });
      await plot("plot-retained", [
        { type: "scatter", mode: "lines+markers", name: "retained", x: months, y: m.map((r) => r.retained_from_previous), line: { color: "#27ae60" } },
      ], { title: { text: "Share of last month's customers active again" }, yaxis: { tickformat: ".0%", range: [0, 1] }, height: 320 });
    }
  }

  async function cohorts() {
    const part = await api("/stats/cohorts");
    showNote(part.note);
    const d = part.data;
    if (!d.cohorts) return;
    const text = d.share.map((row) => row.map((v) => (v === null ? "" : (100 * v).toFixed(0) + "%")));
    await plot("plot-cohorts", [{
      type: "heatmap", z: d.share, x: d.periods.map((p) => "+" + p), y: d.cohorts.map((c, i) => c + " (" + fmt(d.size[i]) + ")"),
      text: text, texttemplate: "%{text}", colorscale: "Blues", zmin: 0, zmax: 1, hovertemplate: "cohort %{y}, %{x} months: %{z:.1%}<extra></extra>",
    }], { title: { text: "Share of each first-purchase cohort buying n months later" }, yaxis: { autorange: "reversed" }, height: 120 + 32 * d.cohorts.length, margin: { l: 130, r: 30, t: 40, b: 50 } });
  }

  async function risk() {
    const part = await api("/stats/risk");
    showNote(part.note);
    const d = part.data;
    if (!d.histogram) return;
    app.append(el("p", { cls: "meta", text: "Model " + d.model_version + ", cutoff " + d.cutoff + ", horizon " + d.horizon_days + " days: " + fmt(d.customers) + " customers, " + fmt(d.expected_retained) + " expected to buy again." }));
    const edges = d.histogram.edges;
    const mids = edges.slice(0, -1).map((e, i) => (e + edges[i + 1]) / 2);
    const band = (p) => (p < 0.3 ? "high" : p < 0.6 ? "medium" : "low");
    await plot("plot-risk", [{ type: "bar", x: mids, y: d.histogram.counts, width: edges[1] - edges[0], marker: { color: mids.map((p) => COLORS[band(p)]) }, hovertemplate: "P(retained) %{x:.2f}: %{y} customers<extra></extra>" }],
      { title: { text: "Customers by P(retained) (colour: risk band)" }, xaxis: { title: { text: "P(retained)" }, range: [0, 1] }, yaxis: { title: { text: "customers" } }, height: 380 });
    app.append(table([["band", "risk band"], ["customers", "customers"], ["share", "share", "pct"], ["mean_p_retained", "mean P(retained)", "pct"], ["clv", "expected value (CLV)"]], d.bands, "table-bands"));
  }

  async function drivers() {
    const part = await api("/stats/drivers");
    showNote(part.note);
    const d = part.data;
    if (!d.features) return;
    const f = d.features.slice().reverse();
    await plot("plot-drivers", [{ type: "bar", orientation: "h", x: f.map((r) => r.mean_abs), y: f.map((r) => r.feature), marker: { color: "#5b8def" } }],
      { title: { text: "Features behind the scores: mean |contribution| to the log-odds" }, height: 120 + 28 * f.length, margin: { l: 220, r: 30, t: 40, b: 50 } });
    const fam = Object.entries(d.families || {});
    await plot("plot-families", [{ type: "bar", x: fam.map(([k]) => k), y: fam.map(([, v]) => v), marker: { color: "#a9c4f5" } }],
      { title: { text: "Share of all contributions by feature family" }, yaxis: { tickformat: ".0%" }, height: 320 });
    const top = Object.entries(d.top_churn_reason_of_high_risk || {}).map(([feature, n]) => ({ feature, n }));
    app.append(el("h2", { text: "Strongest churn reason of high-risk customers" }));
    app.append(table([["feature", "feature"], ["n", "customers"]], top, "table-top-reasons"));
  }

  function reasonList(title, items, cls) {
    return el("div", { cls: "reasons " + cls }, [el("h3", { text: title }),
      items.length ? el("ul", {}, items.map((r) => el("li", { text: r.text || r.feature }))) : el("p", { cls: "muted", text: "none stored" })]);
  }

  function kv(obj) {
    return el("table", { cls: "kv" }, Object.entries(obj).map(([k, v]) => el("tr", {}, [el("th", { text: k }), el("td", { text: typeof v === "object" && v !== null ? JSON.stringify(v) : fmt(v, typeof v === "number" && Math.abs(v) < 10 ? "2" : undefined) })])));
  }

  async function lookup(id) {
    const out = document.getElementById("customer");
    out.replaceChildren(el("p", { cls: "loading", text: "Loading…" }));
    out.setAttribute("aria-busy", "true");
    try {
      const c = await api("/customers/" + encodeURIComponent(id));
      const s = c.scores;
      const parts = [el("h2", { "data-testid": "customer-id", text: "Customer " + c.user_id })];
      if (s) {
        parts.push(el("div", { cls: "cards" }, [
          card("P(retained) in " + s.horizon_days + " days", fmt(s.p_retained, "pct"), "customer-p"),
          card("Risk", s.risk_band, "customer-band"),
          card("P(alive)", fmt(s.p_alive, "pct"), "customer-alive"),
          card("Expected purchases", fmt(s.expected_purchases, "2"), "customer-expected"),
          card("Expected value (CLV)", fmt(s.clv), "customer-clv"),
        ]));
        parts.push(el("p", { cls: "meta", text: "Scored at cutoff " + s.cutoff + " by model " + s.model_version + "." }));
      }
      const a = c.activity;
      parts.push(el("p", { cls: "meta", "data-testid": "customer-activity", text: fmt(a.purchases) + " purchase lines in " + fmt(a.orders) + " orders, revenue " + fmt(a.revenue) + "; last purchase " + (a.last_purchase || "–") + "." }));
      parts.push(el("div", { cls: "two" }, [reasonList("Pushing towards churn", c.reasons.churn, "churn"), reasonList("Pushing towards coming back", c.reasons.retention, "retention")]));
      const sections = el("div", { cls: "two" });
      const recs = el("div", { "data-testid": "customer-recommendations" }, [el("h3", { text: "Recommendations" })]);
      recs.append(c.recommendations.length ? table(Object.keys(c.recommendations[0]).map((k) => [k, k]), c.recommendations) : el("p", { cls: "muted", text: c.notes.recommendations || "none" }));
      const plan = el("div", { "data-testid": "customer-plan" }, [el("h3", { text: "Planned action" })]);
      plan.append(c.planned_action ? kv(c.planned_action) : el("p", { cls: "muted", text: c.notes.planned_action || "none" }));
      const tier = el("div", { "data-testid": "customer-tier" }, [el("h3", { text: "Loyalty" })]);
      tier.append(c.tier ? el("p", { text: c.tier + (c.points !== null ? " · " + fmt(c.points) + " points" : "") }) : el("p", { cls: "muted", text: c.notes.loyalty || "none" }));
      sections.append(recs, plan, tier);
      parts.push(sections);
      out.replaceChildren(...parts);
      const rs = c.reasons.churn.concat(c.reasons.retention).filter((r) => r.contribution !== null);
      if (rs.length) {
        const div = el("div", { id: "plot-reasons", cls: "plot", "data-testid": "plot-reasons" });
        out.append(div);
        const sorted = rs.slice().sort((x, y) => x.contribution - y.contribution);
        await Plotly.newPlot(div, [{ type: "bar", orientation: "h", x: sorted.map((r) => r.contribution), y: sorted.map((r) => r.feature),
          marker: { color: sorted.map((r) => (r.contribution < 0 ? COLORS.churn : COLORS.retention)) } }],
        Object.assign({}, LAYOUT, { title: { text: "Reasons: contribution to the log-odds of coming back" }, height: Math.max(280, 140 + 30 * sorted.length), margin: { l: 220, r: 30, t: 40, b: 50 } }), PLOT_CONFIG);
      }
    } catch (err) {
      out.replaceChildren(el("p", { cls: "error", "data-testid": "customer-error", text: err.message }));
    } finally {
      out.setAttribute("aria-busy", "false");
    }
  }

  async function customers() {
    const form = el("form", { id: "lookup-form", cls: "lookup" }, [
      el("label", { for: "customer-input", text: "Customer id" }),
      el("input", { id: "customer-input", name: "id", required: "required", maxlength: "256", autocomplete: "off" }),
      el("button", { type: "submit", text: "Look up" }),
    ]);
    const out = el("div", { id: "customer", "aria-busy": "false" });
    app.append(form, out);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const id = document.getElementById("customer-input").value.trim();
      if (id) { history.replaceState(null, "", "?id=" + encodeURIComponent(id)); lookup(id); }
    });
    const given = new URLSearchParams(window.location.search).get("id");
    if (given) { document.getElementById("customer-input").value = given; await lookup(given); }
  }

  async function planPage() {
    const part = await api("/stats/plan");
    showNote(part.note);
    if (!part.data.rows) return;
    app.append(el("h2", { text: "Totals" }), kv(Object.assign({ rows: part.data.rows }, part.data.totals)));
    const first = await api("/plan?page=1&per_page=50");
    if (first.rows.length) app.append(el("h2", { text: "First " + first.rows.length + " of " + fmt(first.total) + " customers" }), table(Object.keys(first.rows[0]).map((k) => [k, k]), first.rows, "table-plan"));
  }

  async function experiments() {
    const part = await api("/stats/experiments");
    showNote(part.note);
    const exps = part.data.experiments || [];
    const rows = exps.map((e) => ({ experiment_id: e.experiment_id, status: e.status, arms: Object.entries(e.arms).map(([v, n]) => v + ": " + fmt(n)).join(", ") }));
    app.append(rows.length ? table([["experiment_id", "experiment"], ["status", "status"], ["arms", "customers per arm"]], rows, "table-experiments") : el("p", { cls: "muted", text: "No experiments yet." }));
    const results = [];
    for (const e of exps) for (const r of e.results) results.push(Object.assign({ experiment_id: e.experiment_id }, r));
    if (results.length) {
      app.append(el("h2", { text: "Latest analyses: difference from the control, with its interval" }));
      app.append(table([["experiment_id", "experiment"], ["metric", "metric"], ["variant", "variant"], ["n_treatment", "n"], ["difference", "difference", "2"], ["ci_low", "low", "2"], ["ci_high", "high", "2"], ["p_value", "p-value", "2"]], results, "table-experiment-results"));
      const labels = results.map((r) => r.experiment_id + " · " + r.metric + " · " + r.variant);
      await plot("plot-experiments", [{ type: "scatter", mode: "markers", orientation: "h", x: results.map((r) => r.difference), y: labels,
        error_x: { type: "data", symmetric: false, array: results.map((r) => r.ci_high - r.difference), arrayminus: results.map((r) => r.difference - r.ci_low) }, marker: { size: 10, color: "#5b8def" } }],
      { title: { text: "Difference (variant minus control) and interval" }, shapes: [{ type: "line", x0: 0, x1: 0, yref: "paper", y0: 0, y1: 1, line: { dash: "dot", color: "#888" } }], height: 140 + 36 * results.length, margin: { l: 300, r: 30, t: 40, b: 50 } });
    }
  }

  async function models() {
    const part = await api("/stats/models");
    showNote(part.note);
    const rows = (part.data.models || []).map((m) => Object.assign({}, m, m.valid_metrics));
    if (!rows.length) { app.append(el("p", { cls: "muted", text: "No model registered yet: retention train (or POST /jobs/train)." })); return; }
    app.append(table([["model_id", "model"], ["name", "kind"], ["stage", "stage"], ["cutoff", "cutoff"], ["horizon_days", "horizon"], ["created_at", "registered"], ["roc_auc", "ROC-AUC", "2"], ["pr_auc", "PR-AUC", "2"], ["brier", "Brier", "2"], ["lift_at_10", "lift@10", "2"], ["scored_customers", "scored"]], rows, "table-models"));
    await plot("plot-models", [{ type: "bar", x: rows.map((r) => r.model_id), y: rows.map((r) => r.roc_auc), marker: { color: "#5b8def" } }],
      { title: { text: "Validation ROC-AUC by model" }, yaxis: { range: [0.5, 1] }, height: 300 });
    await monitorPanel();
  }

  // the latest `retention monitor` run: flags, PSI per feature, realised ROC-AUC over time
  async function monitorPanel() {
    const part = await api("/stats/monitor");
    const box = el("section", { "data-testid": "monitor-panel" }, [el("h2", { text: "Monitoring" })]);
    app.append(box);
    if (!part.data.run) { box.append(el("p", { cls: "muted", text: part.note || "No monitor run yet: retention monitor." })); return; }
    const run = part.data.run;
    const flags = run.flags.length ? "DRIFT: " + run.flags.join(", ") : "OK: no flag raised";
    box.append(el("p", { cls: run.flags.length ? "flag-drift" : "flag-ok", "data-testid": "monitor-flags", text: flags + " (model " + run.model_id + ", " + fmt(run.created_at) + ")" }));
    box.append(table([["n_drifted", "drifted features"], ["n_features", "features"], ["max_feature_psi", "max PSI", "2"], ["score_psi", "score PSI", "2"], ["realised_roc_auc", "realised ROC-AUC", "2"], ["baseline_roc_auc", "reference ROC-AUC", "2"], ["decay", "decay", "2"]], [run], "table-monitor"));
    const feats = part.data.features || [];
    if (feats.length) {
      await plot("plot-monitor-psi", [{ type: "bar", orientation: "h", y: feats.map((f) => f.feature), x: feats.map((f) => f.psi), marker: { color: feats.map((f) => (f.drifted ? "#c0392b" : (f.ignored || f.ages_with_calendar ? "#9aa0a6" : "#5b8def"))) } }],
        { title: { text: "PSI per feature (latest run)" }, yaxis: { autorange: "reversed" }, margin: { l: 200, r: 30, t: 40, b: 40 }, height: 60 + 22 * feats.length });
    }
    const perf = part.data.performance || [];
    if (perf.length) {
      await plot("plot-monitor-decay", [{ type: "scatter", mode: "lines+markers", name: "realised", x: perf.map((r) => r.cutoff), y: perf.map((r) => r.roc_auc) }, { type: "scatter", mode: "lines", name: "reference", line: { dash: "dot" }, x: perf.map((r) => r.cutoff), y: perf.map((r) => r.baseline_roc_auc) }],
        { title: { text: "Realised ROC-AUC of earlier scores" }, height: 300 });
    }
  }

  const RENDER = { overview, cohorts, risk, drivers, customers, plan: planPage, experiments, models };

  // ------------------------------------------------------------------------------ login and start
  function startLogin() {
    const form = document.getElementById("login-form");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const value = document.getElementById("key").value.trim();
      const res = await fetch("/auth/me", { headers: { "X-API-Key": value } });
      await res.json().catch(() => ({}));  // read to the end before leaving the page
      if (!res.ok) { showError(res.status === 401 ? "That key is not valid (or was revoked)." : "Sign-in failed (HTTP " + res.status + ")."); return; }
      sessionStorage.setItem(KEY_NAME, value);
      const next = new URLSearchParams(window.location.search).get("next");
      window.location.assign("/dashboard/" + (PAGES.includes(next) ? next : "overview"));
    });
  }

  async function start() {
    if (page === "login") { startLogin(); return; }
    if (!key()) { toLogin(); return; }
    document.getElementById("logout").addEventListener("click", () => { sessionStorage.removeItem(KEY_NAME); toLogin(); });
    try {
      const me = await api("/auth/me");
      document.getElementById("who").textContent = "key " + me.key_id + " (" + me.scope + ")";
      app.replaceChildren();
      await RENDER[page]();
    } catch (err) {
      if (err.message !== "signed out") { app.replaceChildren(); showError(err.message); }
    } finally {
      done();
    }
  }

  start();
})();
