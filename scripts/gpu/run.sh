#!/usr/bin/env bash
# The GPU run: install what the machine lacks from .gpu/ (scripts/gpu/bundle.py), check it, execute the
# peer and every notebook on the full profile with papermill (no rendering: the machine has no nbconvert),
# and pack the executed notebooks, results and predictions into one archive in $OUT.
#
#   on the lent GPU (the device tool): command "bash scripts/gpu/run.sh", carry [".gpu"]
#   here first, the same on the CPU for the first steps:  make gpu-dry-run
#       (PYTHON=.venv/bin/python bash scripts/gpu/run.sh --dry-run)
#
# The jobs run cheapest first (scripts/gpu/jobs.txt), each for at most its cap and what is left of
# MINBERT_GPU_BUDGET_S (default 540 s: a call runs 600 s at most); one that runs out or fails is logged and
# the others still run. Each run a notebook or the peer finishes leaves its finished-run file
# (minbert.finished, keyed by the training code, not the commit), packed even when the notebook is killed;
# the next lease, bundled after receiving this one, resumes from them and skips the jobs whose results came
# home at this commit. The smoke step runs once a commit and the benchmarks once a GPU kind: the lease notes
# both in runs/gpu-state/, which comes home and goes out with the next bundle.
# MINBERT_GPU_JOBS="peer 06_final_bert" runs only those; MINBERT_GPU_CAPS="02_sbert_baseline=60" overrides
# caps (a simulated kill in a dry run); MINBERT_GPU_BENCHMARK=0 skips the benchmarks, =1 runs them again.
# Back here: make gpu-receive FROM=<folder>.
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

pack() {  # what finished, whatever failed: results, predictions, executed notebooks, runs, notes, the log
  local name="minbert-$PROFILE${DRY:+-dry-run}.tar.gz"
  tar -czf "$OUTDIR/$name" -C "$WORK" $(cd "$WORK" && ls -d reports/results reports/predictions \
    runs/executed runs/finished runs/gpu-state 2>/dev/null)
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
export MINBERT_EPOCH_CHECKPOINTS=0  # no last.pt per epoch: a lease's end takes it along (minbert.finished)
MINBERT_COMMIT=$(head -1 "$BUNDLE/commit")
MINBERT_DIRTY=$([ "$(sed -n 2p "$BUNDLE/commit")" = dirty ] && echo 1 || echo 0)
export MINBERT_COMMIT MINBERT_DIRTY

$PY scripts/gpu/check.py 2>&1 | tee -a "$OUTDIR/log.txt"
[ "${PIPESTATUS[0]}" = 0 ] || { log "the check failed: nothing run"; exit 1; }
STATE=$MINBERT_RUNS_DIR/gpu-state  # the lease's notes: what earlier leases did, what this one did
mkdir -p "$STATE"
[ -d "$BUNDLE/state" ] && cp "$BUNDLE"/state/* "$STATE"/ 2>/dev/null
KIND=$($PY -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" |
  tr -c 'A-Za-z0-9\n' '-')
# one short epoch of every training path on the device: a broken path costs a minute, not the lease
if [ -n "${DRY[*]}" ]; then  # on a 2-core CPU the MiniLM's steps take minutes; the tests run the script
  log "smoke step skipped in a dry run (the tests run scripts/gpu/smoke.py on the CPU and a stand-in device)"
elif [ -f "$STATE/smoke-$MINBERT_COMMIT" ]; then
  log "smoke step skipped: it passed at this commit on an earlier lease"
else
  timeout 120 $PY scripts/gpu/smoke.py 2>&1 | tee -a "$OUTDIR/log.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || { log "the smoke run failed (the paths it names): nothing run"; exit 1; }
  touch "$STATE/smoke-$MINBERT_COMMIT"
fi
BENCH=${MINBERT_GPU_BENCHMARK:-}
[ -z "$BENCH" ] && { [ -f "$STATE/benchmarks-$KIND" ] && BENCH=0 || BENCH=1; }
if [ -z "${DRY[*]}" ] && [ "$BENCH" = 1 ]; then  # the speed figures, logged; capped; once a GPU kind
  timeout 150 $PY benchmarks/throughput.py --devices cuda --repeats 5 --skip-epochs >>"$OUTDIR/log.txt" 2>&1
  log "throughput benchmark: rc=$?"
  timeout 90 $PY benchmarks/parallel_runs.py --profile "$PROFILE" --runs 4 --processes 4 --rows 512 \
    >>"$OUTDIR/log.txt" 2>&1
  log "parallel-runs benchmark: rc=$?"
  touch "$STATE/benchmarks-$KIND"
elif [ -z "${DRY[*]}" ]; then
  log "benchmarks skipped: they ran on a $KIND on an earlier lease (MINBERT_GPU_BENCHMARK=1 runs them again)"
fi

if [ -d "$BUNDLE/finished" ]; then  # what earlier leases finished: the notebooks and the peer resume from it
  mkdir -p "$MINBERT_RUNS_DIR" && cp -r "$BUNDLE/finished" "$MINBERT_RUNS_DIR/finished"
  log "resuming from $(find "$BUNDLE/finished" -name '*.npz' | wc -l) finished runs of earlier leases"
fi

cap_of() {  # a job's cap: MINBERT_GPU_CAPS, else jobs.txt, else the whole budget
  local over
  over=$(tr ' ' '\n' <<<"${MINBERT_GPU_CAPS:-}" | sed -n "s/^$1=//p")
  [ -n "$over" ] && { echo "$over"; return; }
  awk -v job="$1" '$1 == job {print $2}' scripts/gpu/jobs.txt | grep . || echo "${MINBERT_GPU_BUDGET_S:-540}"
}

came_home() {  # the job's results file came back from an earlier lease at this commit
  local name=$1
  [ "$name" = peer ] && name=peer_transformers
  local file=$ROOT/reports/results/$name.$PROFILE.json
  [ -z "${DRY[*]}" ] && [ -f "$file" ] &&
    $PY -c "import json, sys; sys.exit(json.load(open(sys.argv[1]))['stamp']['commit'] != sys.argv[2])" \
      "$file" "$MINBERT_COMMIT"
}

failed=0
for job in ${MINBERT_GPU_JOBS:-$(awk '!/^#/ && NF {print $1}' scripts/gpu/jobs.txt)}; do
  if came_home "$job"; then log "$job: its results came home from an earlier lease at this commit"; continue; fi
  left=$((DEADLINE - $(date +%s)))
  if [ "$left" -lt 30 ]; then log "$job: skipped, ${left}s left of the budget"; failed=1; continue; fi
  cap=$(cap_of "$job")
  [ "$cap" -lt "$left" ] && left=$cap
  t0=$(date +%s)
  case $job in
    peer) timeout "$left" "$PY" -m minbert peer --profile "$PROFILE" -p resume true "${DRY[@]}" \
            >>"$OUTDIR/log.txt" 2>&1 ;;
    0[1-6]_*) timeout "$left" "$PY" -m minbert run "$job" --profile "$PROFILE" --no-render -p resume true \
                "${DRY[@]}" >>"$OUTDIR/log.txt" 2>&1 ;;
    *) timeout "$left" "$PY" -m minbert run "$job" --profile "$PROFILE" --no-render "${DRY[@]}" \
         >>"$OUTDIR/log.txt" 2>&1 ;;
  esac
  rc=$?
  [ "$rc" = 0 ] || failed=1
  folder=$job
  [ "$job" = peer ] && folder=peer_transformers
  kept=$(find "$MINBERT_RUNS_DIR/finished" -path "*/$folder.$PROFILE/*.npz" 2>/dev/null | wc -l)
  log "$job: rc=$rc$([ "$rc" = 124 ] && echo " (out of time: cap ${left}s)") in $(($(date +%s) - t0)) s," \
    "$kept finished runs kept"
done
pack
exit $failed
