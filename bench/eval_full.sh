#!/usr/bin/env bash
# Full benchmark runs of the packaged SmolLM2-135M-Instruct, one results dir per task
# (a finished task is skipped on re-run). The table in docs/benchmarks.md comes from these.
# Runs for hours on 2 cores (HellaSwag and GSM8K are the long ones).
#   bash bench/eval_full.sh [OUT_DIR]
set -uo pipefail
OUT=${1:-bench/results/eval-full}  # committed: a later session resumes where this one stopped
PY=${PY:-.venv/bin/python}
run() {  # name, shots, tasks
  local dir="$OUT/$1"
  [ -f "$dir/results.json" ] && { echo "skip $1 (done)"; return; }
  echo "== $1 $(date -u +%H:%M:%S)"
  "$PY" -m llmkit eval --tasks "$3" --shots "$2" --out "$dir" ${EVAL_FLAGS:---no-progress}
}
run arc_easy-0 0 arc_easy
run arc_challenge-0 0 arc_challenge
run piqa-0 0 piqa
run winogrande-0 0 winogrande
run hellaswag-0 0 hellaswag
run mmlu-0 0 mmlu
run gsm8k-5 5 gsm8k
run mmlu-5 5 mmlu
run mmlu_cloze-0 0 mmlu_cloze
echo "== done $(date -u +%H:%M:%S)"
