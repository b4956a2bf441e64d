#!/usr/bin/env bash
# Start a local Ray head on 127.0.0.1 that stands in for a heterogeneous cluster, so that
# `ray job submit` can be tried on a laptop. The head advertises the custom resources of the two
# local hardware profiles (cluster/profiles.yaml: local_all_threads, local_one_thread) and the
# node label hw=local. Everything listens on 127.0.0.1 only, with token authentication.
#
# Usage: cluster/start_local.sh [--num-cpus N] [--port P] [--dashboard-port P] [--dry-run]
#   --dry-run   print the `ray start` command and the instructions, start nothing.
# Environment: RAY_BIN (default: .venv/bin/ray in the repository, else `ray` on PATH).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
num_cpus="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"
port=6379
dashboard_port=8265
dry_run=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --num-cpus) num_cpus="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --dashboard-port) dashboard_port="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "start_local.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -z "${RAY_BIN:-}" ]]; then
  if [[ -x "$repo_root/.venv/bin/ray" ]]; then RAY_BIN="$repo_root/.venv/bin/ray"; else RAY_BIN="ray"; fi
fi
if [[ "$RAY_BIN" == */* ]]; then
  # Ray's processes inherit this PATH, so a job's `python` is the interpreter beside this ray.
  export PATH="$(dirname "$RAY_BIN"):$PATH"
fi

# Keep Ray on the loopback address (Linux would otherwise swap 127.0.0.1 for the machine's
# network address) and require the token from ~/.ray/auth_token on every client.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export RAY_AUTH_MODE=token
export RAY_USAGE_STATS_ENABLED=0

resources='{"latency_local_all_threads": 1, "latency_local_one_thread": 1}'
start_cmd=(
  "$RAY_BIN" start --head
  --node-ip-address=127.0.0.1
  --port="$port"
  --dashboard-host=127.0.0.1
  --dashboard-port="$dashboard_port"
  --num-cpus="$num_cpus"
  --resources="$resources"
  --labels="hw=local"
  --disable-usage-stats
)

dashboard="http://127.0.0.1:${dashboard_port}"

if [[ "$dry_run" -eq 1 ]]; then
  printf 'would run:'
  printf ' %q' "${start_cmd[@]}"
  printf '\n'
else
  # Creates ~/.ray/auth_token once; the same token is then read by ray start and ray job submit.
  "$RAY_BIN" get-auth-token --generate > /dev/null
  "${start_cmd[@]}"
fi

cat <<INFO

Ray head on 127.0.0.1:${port} (${num_cpus} CPUs, resources ${resources}, label hw=local).
Dashboard: ${dashboard}

Submit the pipeline from the repository root (same environment variables as above):
  export RAY_AUTH_MODE=token
  ${RAY_BIN} job submit --address ${dashboard} --working-dir . -- \\
      python jobs/run_pipeline.py --config jobs/configs/demo.yaml

Stop it when done (this stops every Ray process on this machine started with ray start):
  ${RAY_BIN} stop
INFO
