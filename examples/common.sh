# Sourced by the examples' run.sh once they have set OUT: the environment every example runs in, a fresh output
# directory, and `stage NAME COMMAND...`, which runs one step and appends its wall time to $OUT/timings.txt.

# No network is needed: models and tokenizers are built locally, W&B writes offline.
export HF_HUB_OFFLINE=1 WANDB_MODE=offline WANDB_SILENT=true RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
# The README installs uv with pip, which may leave it off PATH.
command -v uv >/dev/null || uv() { python3 -m uv "$@"; }

rm -rf "$OUT"
mkdir -p "$OUT"
timings="$OUT/timings.txt"
: >"$timings"
stage() {
  local name="$1" start=$SECONDS
  shift
  echo "=== $name ==="
  "$@"
  echo "$name $((SECONDS - start))s" | tee -a "$timings"
}
