#!/usr/bin/env bash
# The demo `make demo` runs: bundled real data (UCI Online Retail) through the whole pipeline.
#   ingest -> info -> backtest (JSON + HTML report) -> train -> score -> explain
set -euo pipefail
OUT=${1:-demo-output}
mkdir -p "$OUT"
DB="$OUT/retention.duckdb"
R=.venv/bin/retention
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

echo "== 1. ingest the bundled Online Retail log (541,909 invoice lines) =="
$R datasets load online_retail --db "$DB"
echo
echo "== 2. what is in the store =="
$R info --db "$DB"
echo
echo "== 3. backtest at 2011-09-10, horizon 90 days (models learn only from earlier cutoffs) =="
$R backtest --db "$DB" --cutoff 2011-09-10 --horizon 90 \
  --json "$OUT/backtest.json" --report "$OUT/backtest.html"
echo
echo "== 4. train on all history up to the last event =="
$R train --db "$DB" --horizon 90 --out "$OUT/model"
echo
echo "== 5. score every customer =="
$R score --db "$DB" --model "$OUT/model" --out "$OUT/scores.csv"
echo
echo "== 6. why: customer 12346 (bought 74,215 units in one order, then returned them) =="
$R explain --user 12346 --db "$DB" --model "$OUT/model"
echo
echo "Done. Outputs in $OUT/:"
echo "  report:  $OUT/backtest.html"
echo "  metrics: $OUT/backtest.json"
echo "  model:   $OUT/model"
echo "  scores:  $OUT/scores.csv (and table 'scores' in $DB)"
echo
echo "Dashboard and REST API: run 'make serve', then open http://127.0.0.1:8000/dashboard"
echo "and sign in with the read key it prints (API spec: http://127.0.0.1:8000/openapi.json)."
