#!/usr/bin/env bash
# The app's own retraining on the grocery history (issue 11), from an empty embedded app:
# catalogue, index, labelled history, then `retrain --wait` with every default (training, the
# gate, the promotion), and the promoted model evaluated on val (cold, warm, 2-photo).
#
#   bash bench/inapp_retrain.sh [OUT]      # OUT: a fresh var directory (default /tmp/inapp)
#
# Needs ../shared/data/grocery. Takes the training budget (45 min) plus the gate; prints wall
# times with the machine and date. Benchmark, not a test: run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
GROCERY="$PWD/../shared/data/grocery"
OUT="$(realpath -m "${1:-/tmp/inapp}")"
[ -d "$GROCERY" ] || { echo "no Grocery Store Dataset at $GROCERY" >&2; exit 2; }
rm -rf "$OUT" && mkdir -p "$OUT"
export SKULENS_VAR_DIR="$OUT" DJANGO_DEBUG=1 DJANGO_SECRET_KEY=inapp-bench
unset DATABASE_URL
echo "# in-app retraining, $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs," \
  "$(grep -o 'avx512_vnni\|avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')$(date -u '+%F %H:%M UTC')"
manage() { python manage.py "$@"; }
stamp() { date -u +%s; }
t0=$(stamp)
manage migrate --verbosity 0
manage import_catalogue --grocery "$GROCERY" --verbosity 0
manage build_index --verbosity 0
manage import_history --grocery "$GROCERY"
t1=$(stamp)
echo "set-up: $((t1 - t0)) s"
manage retrain --wait
t2=$(stamp)
echo "retrain --wait (training, gate, promotion): $((t2 - t1)) s"
MODEL="$(manage live_model)"
echo "live model: $MODEL"
python -m ml grocery-csv --root "$GROCERY" --out "$OUT/grocery" >/dev/null
python -c "from ml.train.data import write_grocery_training_csv as w; \
  w('$OUT/grocery', '$OUT/grocery/train_all.csv')"
V="$OUT/grocery/val_photos.csv"
echo "== cold"; python -m ml evaluate --gallery "$OUT/grocery/gallery_iconic.csv" --queries "$V" \
  --model "$MODEL" --quiet
echo "== warm"; python -m ml evaluate --gallery "$OUT/grocery/train_all.csv" --queries "$V" \
  --model "$MODEL" --quiet
echo "== 2-photo (125 full pairs)"; python -m ml evaluate --gallery \
  "$OUT/grocery/gallery_iconic.csv" --queries "$V" --model "$MODEL" --group-size 2 \
  --full-groups --quiet
