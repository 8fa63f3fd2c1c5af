#!/usr/bin/env bash
# compare.sh: new orders end to end over MLLP on PostgreSQL (ferry serve, 8 connections, each order
# a new patient) against what PostgreSQL itself commits for the same rows (pgbench, order.sql, 8
# clients), run one after the other in the same minute, each on a fresh database. Prints both
# rates and their ratio. See README.md.
#
#   bench/pgbench/compare.sh [ORDERS] [PGBENCH_SECONDS]
#
# Environment: PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres), MLLPLOAD (a built
# ../shared/tools/mllpload, else it is built), FERRY (a built bin/ferry, else it is built).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
orders=${1:-6000}
seconds=${2:-20}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
work=$(mktemp -d)
ferry_pid=
cleanup() {
	if [ -n "$ferry_pid" ]; then kill "$ferry_pid" 2>/dev/null || true; wait "$ferry_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

ferry=${FERRY:-}
if [ -z "$ferry" ]; then
	ferry=$work/ferry
	(cd "$repo" && go build -o "$ferry" ./cmd/ferry)
fi
mllpload=${MLLPLOAD:-}
if [ -z "$mllpload" ]; then
	mllpload=$work/mllpload
	(cd "$repo/../shared/tools/mllpload" && go build -o "$mllpload" .)
fi

fresh() { dropdb --if-exists "$1" && createdb "$1"; }

# CPU time in clock ticks: of one process (ticks PID), of every PostgreSQL process (pg_ticks;
# other clients of the same server count too, so run it on a quiet server; pgbench's backends
# exit before they could be read, so only Ferry's side is reported).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pg_ticks() {
	local sum=0 pid
	for pid in $(pgrep -u postgres); do sum=$((sum + $(ticks "$pid" 2>/dev/null || echo 0))); done
	echo "$sum"
}
hz=$(getconf CLK_TCK)

# Ferry: a fresh database, ferry serve on free loopback ports, mllpload's orders.
fresh ferry_bench_orders
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mllp=127.0.0.1:$(port)
(cd "$work" && exec "$ferry" serve --db "postgres://$PGUSER@$PGHOST:$PGPORT/ferry_bench_orders?sslmode=disable" \
	--mllp "$mllp" --http 127.0.0.1:$(port) --dicom 127.0.0.1:$(port) >"$work/ferry.log" 2>&1) &
ferry_pid=$!
for _ in $(seq 600); do
	if (exec 3<>"/dev/tcp/${mllp%:*}/${mllp#*:}") 2>/dev/null; then break; fi
	kill -0 "$ferry_pid" 2>/dev/null || { cat "$work/ferry.log"; exit 1; }
	sleep 0.1 # a script waiting for a server to listen, not a test
done
ferry_cpu0=$(ticks "$ferry_pid"); pg_cpu0=$(pg_ticks)
ferry_line=$("$mllpload" -addr "$mllp" -conns 8 -n "$orders" "$here/orm.hl7")
ferry_cpu=$(($(ticks "$ferry_pid") - ferry_cpu0)); pg_cpu=$(($(pg_ticks) - pg_cpu0))
kill "$ferry_pid"; wait "$ferry_pid" || true; ferry_pid=
echo "ferry:   $ferry_line"
python3 -c "print('CPU per order: ferry %.2f ms, PostgreSQL %.2f ms' % ($ferry_cpu * 1000 / $hz / $orders, $pg_cpu * 1000 / $hz / $orders))"

# PostgreSQL alone: the same rows, one order a transaction, 8 clients.
fresh ferry_bench_pgbench
psql -q -d ferry_bench_pgbench -f "$here/schema.sql"
pg_line=$(pgbench -n -M prepared -c 8 -j 2 -T "$seconds" -f "$here/order.sql" ferry_bench_pgbench 2>&1 | grep -E '^tps')
echo "pgbench: $pg_line"

ferry_rate=$(sed -E 's/.* rate=([0-9.]+) .*/\1/' <<<"$ferry_line")
pg_rate=$(sed -E 's/^tps = ([0-9.]+).*/\1/' <<<"$pg_line")
python3 -c "print('ratio: %.2fx (%s orders/s over MLLP, %s transactions/s in pgbench)' % ($ferry_rate / $pg_rate, '$ferry_rate', '$pg_rate'))"
