#!/usr/bin/env bash
# Same-box comparison: TaskForge against beanstalkd and Redis with one load generator
# (`taskforge bench`) and one workload shape, taken in one run.
#
# Starts on 127.0.0.1, each with its own temporary directory, removed on exit:
#   beanstalkd -b DIR -f 0   binlog, fsync after every write
#   beanstalkd               in memory
#   redis-server             appendonly yes, appendfsync always (no RDB snapshots)
#   redis-server             no persistence
# TaskForge runs as a child of the bench (`--spawn`) with fsync always and never.
#
# Usage: benches/run-peers.sh [OUT_DIR]
# Environment:
#   TASKFORGE_BIN  the binary (default target/release/taskforge; build with
#                  `cargo build --release` first)
#   DURATION_S     seconds each run produces (default 10)
#   IN_FLIGHT      in-flight depths to run (default "1 32")
#   PIN            1: servers on CPU 0 and the load generator on CPU 1 (taskset);
#                  0: everything shares every CPU (default 0)
#   ONLY           space-separated subset of: tf-always tf-never tf-interval10
#                  beanstalkd-binlog beanstalkd-memory redis-always redis-none
#   WORKLOADS      default "lifecycle"; also "enqueue" and "drain" (drain moves DRAIN_JOBS)
#   DRAIN_JOBS     backlog of the drain workload (default 200000)
# Needs: beanstalkd, redis-server (Debian: apt-get install -y beanstalkd redis-server),
# taskset (util-linux), python3 for the summary table.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${TASKFORGE_BIN:-target/release/taskforge}
DURATION_S=${DURATION_S:-10}
IN_FLIGHT=${IN_FLIGHT:-"1 32"}
PIN=${PIN:-0}
WORKLOADS=${WORKLOADS:-lifecycle}
DRAIN_JOBS=${DRAIN_JOBS:-200000}
ONLY=${ONLY:-"tf-always tf-never beanstalkd-binlog beanstalkd-memory redis-always redis-none"}
OUT=${1:-$(mktemp -d /tmp/taskforge-peers-XXXXXX)}
mkdir -p "$OUT"

BEANSTALKD_BINLOG_PORT=11301
BEANSTALKD_MEMORY_PORT=11302
REDIS_ALWAYS_PORT=16379
REDIS_NONE_PORT=16380

for tool in beanstalkd redis-server taskset python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "missing $BIN: cargo build --release" >&2; exit 1; }

WORK=$(mktemp -d /tmp/taskforge-peer-servers-XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

if [ "$PIN" = 1 ]; then
    SERVER_PIN=(taskset -c 0)
    CLIENT_PIN=(taskset -c 1)
    SERVER_CPUS=(--server-cpus 0)
else
    SERVER_PIN=()
    CLIENT_PIN=()
    SERVER_CPUS=()
fi

# Starts a server in the background and records its pid (exec keeps the pid).
start() {
    local name=$1
    shift
    "${SERVER_PIN[@]}" "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    eval "PID_${name//-/_}=$!"
}

mkdir -p "$WORK/beanstalkd-binlog" "$WORK/redis-always" "$WORK/redis-none"
start beanstalkd-binlog beanstalkd -l 127.0.0.1 -p $BEANSTALKD_BINLOG_PORT \
    -b "$WORK/beanstalkd-binlog" -f 0
start beanstalkd-memory beanstalkd -l 127.0.0.1 -p $BEANSTALKD_MEMORY_PORT
start redis-always redis-server --bind 127.0.0.1 --port $REDIS_ALWAYS_PORT \
    --dir "$WORK/redis-always" --save '' --appendonly yes --appendfsync always
start redis-none redis-server --bind 127.0.0.1 --port $REDIS_NONE_PORT \
    --dir "$WORK/redis-none" --save '' --appendonly no
sleep 1

# bench NAME WORKLOAD DEPTH ARGS...: one run, its JSON in $OUT/NAME-WORKLOAD-DEPTH.json.
bench() {
    local name=$1 workload=$2 depth=$3
    shift 3
    local amount=(--duration-s "$DURATION_S")
    [ "$workload" = drain ] && amount=(--jobs "$DRAIN_JOBS")
    local file="$OUT/$name-$workload-$depth.json"
    echo "== $name $workload in-flight=$depth" >&2
    if ! "${CLIENT_PIN[@]}" "$BIN" bench --workload "$workload" --producers 4 --consumers 4 \
        --in-flight "$depth" --payload-bytes 128 "${amount[@]}" --json --quiet "$@" >"$file"; then
        echo "   failed (see $file)" >&2
    fi
}

for workload in $WORKLOADS; do
    for depth in $IN_FLIGHT; do
        for target in $ONLY; do
            case $target in
            tf-always) bench "$target" "$workload" "$depth" --spawn --fsync always "${SERVER_CPUS[@]}" ;;
            tf-never) bench "$target" "$workload" "$depth" --spawn --fsync never "${SERVER_CPUS[@]}" ;;
            tf-interval10) bench "$target" "$workload" "$depth" --spawn --fsync interval:10 "${SERVER_CPUS[@]}" ;;
            beanstalkd-binlog) bench "$target" "$workload" "$depth" --peer beanstalkd \
                --addr 127.0.0.1:$BEANSTALKD_BINLOG_PORT --server-pid "$PID_beanstalkd_binlog" ;;
            beanstalkd-memory) bench "$target" "$workload" "$depth" --peer beanstalkd \
                --addr 127.0.0.1:$BEANSTALKD_MEMORY_PORT --server-pid "$PID_beanstalkd_memory" ;;
            redis-always) bench "$target" "$workload" "$depth" --peer redis \
                --addr 127.0.0.1:$REDIS_ALWAYS_PORT --server-pid "$PID_redis_always" ;;
            redis-none) bench "$target" "$workload" "$depth" --peer redis \
                --addr 127.0.0.1:$REDIS_NONE_PORT --server-pid "$PID_redis_none" ;;
            *) echo "unknown target $target" >&2; exit 2 ;;
            esac
        done
    done
done

python3 - "$OUT" <<'EOF'
import json, pathlib, sys
rows = []
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    try:
        report = json.loads(path.read_text())
    except ValueError:
        print(f"| {path.stem} | failed |")
        continue
    latency = report["latency"]
    cpu = report.get("server_cpu") or {}
    once = report["exactly_once"]
    check = ("ok" if once["missing"] == once["duplicates"] == once["unexpected"] == 0 else "FAILED") if once["checked"] else "-"
    rows.append(f"| {path.stem} | {report['jobs_per_s']:.0f} | {latency['p50_us']/1e3:.2f} | "
                f"{latency['p99_us']/1e3:.2f} | {latency['p999_us']/1e3:.2f} | "
                f"{latency['max_us']/1e3:.1f} | {cpu.get('cpu_us_per_job', float('nan')):.1f} | "
                f"{cpu.get('cpu_us_per_job_settled') or float('nan'):.1f} | {check} |")
print("| run | jobs/s | p50 ms | p99 ms | p99.9 ms | max ms | server CPU µs/job | the same, settled | exactly once |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
print("\n".join(rows))
EOF
echo "JSON reports in $OUT" >&2
