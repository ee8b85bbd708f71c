#!/bin/bash
# ext.sh BIN WORKERS FSYNC DEPTH [extra bench args]
BIN=$1; W=$2; F=$3; D=$4; shift 4
DIR=$(mktemp -d /tmp/extXXXX)
PORT=$((20000 + RANDOM % 20000))
TASKFORGE_ROOT_TOKEN=benchroottoken_long_enough TOKIO_WORKER_THREADS=$W $BIN server --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:0 --data-dir $DIR --fsync $F --log-level warn &
SPID=$!
sleep 1.5
"${BENCH_BIN:-/tmp/tf-s8}" bench --addr 127.0.0.1:$PORT --root-token benchroottoken_long_enough --server-pid $SPID --workload lifecycle --producers 4 --consumers 4 --in-flight $D --payload-bytes 128 --duration-s 10 --json --quiet "$@" > /tmp/ext.json
kill $SPID; wait $SPID 2>/dev/null
rm -rf $DIR
python3 -c "
import json;d=json.load(open('/tmp/ext.json'));print('$(basename $BIN) w=$W $F@$D', round(d['jobs_per_s']), round(d['server_cpu']['cpu_us_per_job'],1), round(d['server_cpu'].get('load_generator_cpu_us_per_job') or 0,1), 'p99', d['latency']['p99_us'] if 'p99_us' in d['latency'] else d['latency'])"
