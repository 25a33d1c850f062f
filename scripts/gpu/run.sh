#!/usr/bin/env bash
# The GPU run: install what the machine lacks from .gpu/ (scripts/gpu/bundle.py), check it, execute the
# peer and every notebook on the full profile with papermill (no rendering: the machine has no nbconvert),
# and pack the executed notebooks, results and predictions into one archive in $OUT.
#
#   on the lent GPU (the device tool): command "bash scripts/gpu/run.sh", carry [".gpu"]
#   here first, the same on the CPU for the first steps:  make gpu-dry-run
#       (PYTHON=.venv/bin/python bash scripts/gpu/run.sh --dry-run)
#
# Every notebook gets what is left of MINBERT_GPU_BUDGET_S (default 540 s: a call runs 600 s at most); one
# that runs out or fails is logged and the others still run. MINBERT_GPU_JOBS="peer 06_final_bert" runs
# only those. Back here: make gpu-receive FROM=<folder>.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUNDLE=$ROOT/.gpu
PY=${PYTHON:-python3}
PROFILE=${PROFILE:-full}
DRY=()
[ "${1:-}" = "--dry-run" ] && DRY=(--dry-run)
[ -f "$BUNDLE/commit" ] || { echo "no bundle in $BUNDLE: run 'make gpu-bundle' first" >&2; exit 2; }
WORK=$(mktemp -d /tmp/minbert-gpu.XXXXXX)
OUTDIR=${OUT:-$WORK/out}
mkdir -p "$OUTDIR"
START=$(date +%s)
DEADLINE=$((START + ${MINBERT_GPU_BUDGET_S:-540}))
log() { echo "[$(date -u +%T) +$(($(date +%s) - START))s] $*" | tee -a "$OUTDIR/log.txt"; }

pack() {  # what finished, whatever failed: results, predictions, executed notebooks, the log
  local name="minbert-$PROFILE${DRY:+-dry-run}.tar.gz"
  tar -czf "$OUTDIR/$name" -C "$WORK" $(cd "$WORK" && ls -d reports/results reports/predictions \
    runs/executed 2>/dev/null)
  log "packed $OUTDIR/$name ($(du -h "$OUTDIR/$name" | cut -f1))"
}

log "commit $(head -1 "$BUNDLE/commit") ($(sed -n 2p "$BUNDLE/commit")), profile $PROFILE${DRY:+ (dry run)}, $($PY -V)"
if ! $PY -c "import papermill, ipykernel, optuna, sqlalchemy, alembic, pydantic, ipywidgets" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
    "$BUNDLE"/wheels/*.whl >>"$OUTDIR/log.txt" 2>&1 || { log "installing the wheels failed"; exit 1; }
  export PYTHONPATH=$WORK/site
  log "installed $(ls "$BUNDLE"/wheels/*.whl | wc -l) wheels"
fi
export PYTHONPATH=$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}
tar -xJf "$BUNDLE/data.tar.xz" -C "$WORK" && tar -xJf "$BUNDLE/checkpoint.tar.xz" -C "$WORK" ||
  { log "unpacking the data or the checkpoint failed"; exit 1; }
export MINBERT_DATA_DIR=$WORK/data MINBERT_CHECKPOINT=$WORK/checkpoint
export MINBERT_REPORTS_DIR=$WORK/reports MINBERT_RUNS_DIR=$WORK/runs
MINBERT_COMMIT=$(head -1 "$BUNDLE/commit")
MINBERT_DIRTY=$([ "$(sed -n 2p "$BUNDLE/commit")" = dirty ] && echo 1 || echo 0)
export MINBERT_COMMIT MINBERT_DIRTY

$PY scripts/gpu/check.py 2>&1 | tee -a "$OUTDIR/log.txt"
[ "${PIPESTATUS[0]}" = 0 ] || { log "the check failed: nothing run"; exit 1; }
# one short epoch of every training path on the device: a broken path costs a minute, not the lease
timeout 120 $PY scripts/gpu/smoke.py 2>&1 | tee -a "$OUTDIR/log.txt"
[ "${PIPESTATUS[0]}" = 0 ] || { log "the smoke run failed (the paths it names): nothing run"; exit 1; }

failed=0
for job in ${MINBERT_GPU_JOBS:-peer $(cd notebooks && ls [0-9][0-9]_*.ipynb | sed 's/\.ipynb$//')}; do
  left=$((DEADLINE - $(date +%s)))
  if [ "$left" -lt 30 ]; then log "$job: skipped, ${left}s left of the budget"; failed=1; continue; fi
  t0=$(date +%s)
  if [ "$job" = peer ]; then
    timeout "$left" "$PY" -m minbert peer --profile "$PROFILE" "${DRY[@]}" >>"$OUTDIR/log.txt" 2>&1
  else
    timeout "$left" "$PY" -m minbert run "$job" --profile "$PROFILE" --no-render "${DRY[@]}" \
      >>"$OUTDIR/log.txt" 2>&1
  fi
  rc=$?
  [ "$rc" = 0 ] || failed=1
  log "$job: rc=$rc$([ "$rc" = 124 ] && echo ' (out of time)') in $(($(date +%s) - t0)) s"
done
pack
exit $failed
