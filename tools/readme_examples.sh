#!/usr/bin/env bash
# Regenerate the outputs the README shows under "Check a photo": run it in the repo root after `make run`
# (a fresh clone's champion), then paste what it prints over the README's examples.
#   bash tools/readme_examples.sh [PORT]
# It makes demo/ (tools/make_demo.py), scores it with `realfake predict`, asks the page's JSON API about three of
# its photos, and asks the registered model (the pyfunc that `mlflow models serve` serves) about one.
set -euo pipefail
port=${1:-8765}
bin=${VENV:-.venv}/bin
export PATH="$PWD/$bin:$PATH" DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true COLUMNS=${COLUMNS:-100}
[ -f reports/register.json ] || { echo "no registered champion here: run make run first" >&2; exit 1; }

echo '$ python tools/make_demo.py && realfake predict demo'
python tools/make_demo.py
status=0
realfake predict demo || status=$?
# exit 1: an input failed, as one does on purpose (coffee.jpg, no face); anything else is a real failure
[ "$status" -le 1 ] || { echo "realfake predict failed (exit $status)" >&2; exit "$status"; }

log=$(mktemp)
realfake app --port "$port" >"$log" 2>&1 &
app=$!
trap 'kill $app 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 120); do curl -sf "127.0.0.1:$port/api/model" >/dev/null && break; sleep 1; done
curl -sf "127.0.0.1:$port/api/model" >/dev/null || { echo "the app did not start:" >&2; cat "$log" >&2; exit 1; }
short='import json, sys; d = json.load(sys.stdin); d["preview"] = d["preview"][:30] + "..."; print(json.dumps(d))'
for photo in astronaut.png 05626NMBUM-blurred.png; do
  echo "\$ curl -s -F file=@demo/$photo 127.0.0.1:$port/api/predict"
  curl -s -F "file=@demo/$photo" "127.0.0.1:$port/api/predict" | python -c "$short"
done
echo "\$ curl -s -F file=@demo/coffee.jpg -w ' HTTP %{http_code}\n' 127.0.0.1:$port/api/predict"
curl -s -F file=@demo/coffee.jpg -w ' HTTP %{http_code}\n' "127.0.0.1:$port/api/predict"

echo '$ python: mlflow.pyfunc.load_model("models:/realfake@champion").predict(...) on demo/00354.jpg'
python - <<'EOF'
from pathlib import Path

import mlflow
import pandas as pd

model = mlflow.pyfunc.load_model("models:/realfake@champion")
print(model.predict(pd.DataFrame({"image": [Path("demo/00354.jpg").read_bytes()]})).to_dict("records"))
EOF
