#!/usr/bin/env bash
# Side by side: the etcd anchor (3 etcd members on loopback, fsync on) and raftkv (3 kvserver
# processes started by `kv-bench --spawn 3`) on the same rows, one after the other, in one
# sitting; prints one table with the ratios (ours / etcd).
#
#   bench/compare-etcd.sh                    # all rows
#   ROWS="put-c1 put-c64" bench/compare-etcd.sh
#   OPS_SCALE=0.5 bench/compare-etcd.sh      # half the operations per row
#
# Rows (100-byte values, 10,000 keys, as in shared/anchors/etcd/README.md):
#   put-c1 put-c16 put-c64 put-c256 get-c1 get-c16   (gets are linearizable on both)
# etcd's load generator spreads its connections over the 3 members (followers forward
# to the leader); the Clerk sends everything to the leader.
#
# Two raftkv columns for the rows with more than one client: "threads" (kv-bench
# --clients N: N threads, each a blocking Clerk call at a time) and "async" (kv-bench
# --clients N --pipeline 1: N Clerks, each with one operation in flight, completed by
# callbacks on the RPC I/O threads). etcd's load generator drives its N clients the
# second way (N tokio tasks, each waiting for its reply before the next request); the
# blocking threads cost the client machine 2-3x the CPU, on the same 2 cores. put-c256
# gives etcd's load generator --conns 64 (256 clients share 64 connections); its async
# raftkv row matches that: --clients 64 --pipeline 4 (64 Clerks, one connection each,
# four operations in flight each: 256 in flight).
#
# Needs: etcd 3.4 (Debian: apt-get install -y etcd-server etcd-client) and protoc
# (apt-get install -y protobuf-compiler) to build the anchor's load generator. Without
# etcd it says so and runs our rows only. Every run is bounded (--ops, and --max-secs 120);
# the etcd members are stopped by PID (the anchor's cluster.sh) and kv-bench stops its
# own children; the scratch directory is removed at the end.
#
# Env: ANCHOR (default ../shared/anchors/etcd from the repo, else /work/shared/anchors/etcd),
# OUT (the JSONL of every run; default target/compare-etcd/<UTC time>.jsonl), ROWS, OPS_SCALE.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
ROWS=${ROWS:-"put-c1 put-c16 put-c64 put-c256 get-c1 get-c16"}
OPS_SCALE=${OPS_SCALE:-1}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$repo/target/compare-etcd/$stamp.jsonl}
mkdir -p "$(dirname "$OUT")"
: >"$OUT"

if [[ -z ${ANCHOR:-} ]]; then
  for a in "$repo/../shared/anchors/etcd" /work/shared/anchors/etcd; do
    [[ -f $a/cluster.sh ]] && { ANCHOR=$(cd "$a" && pwd); break; }
  done
fi

# row -> common load flags (both tools take these) and the etcd-only extras
row_args() {
  local ops
  case $1 in
    put-c1)   ops=2000;  echo "--mode put --clients 1 --value-size 100 --keys 10000 --ops" ;;
    put-c16)  ops=20000; echo "--mode put --clients 16 --value-size 100 --keys 10000 --ops" ;;
    put-c64)  ops=40000; echo "--mode put --clients 64 --value-size 100 --keys 10000 --ops" ;;
    put-c256) ops=60000; echo "--mode put --clients 256 --value-size 100 --keys 10000 --ops" ;;
    get-c1)   ops=5000;  echo "--mode get --clients 1 --value-size 100 --keys 10000 --ops" ;;
    get-c16)  ops=40000; echo "--mode get --clients 16 --value-size 100 --keys 10000 --ops" ;;
    *) echo "unknown row $1 (rows: put-c1 put-c16 put-c64 put-c256 get-c1 get-c16)" >&2; return 1 ;;
  esac
  awk -v o="$ops" -v s="$OPS_SCALE" 'BEGIN{n=int(o*s); if(n<1)n=1; print n}'
}
etcd_extra() { case $1 in put-c256) echo "--conns 64" ;; get-*) echo "--linearizable-get true" ;; *) echo "" ;; esac; }

for r in $ROWS; do row_args "$r" >/dev/null; done   # reject unknown rows before any work

echo "# compare-etcd $stamp: $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== building kv-bench"
(cd "$repo" && cargo build --release -q -p bench --bin kv-bench)
KVB=$repo/target/release/kv-bench

have_etcd=1
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  echo "etcd is not installed (Debian: apt-get install -y etcd-server etcd-client); running raftkv's rows only"
  have_etcd=0
elif [[ -z ${ANCHOR:-} ]]; then
  echo "the etcd anchor scripts were not found (set ANCHOR=.../shared/anchors/etcd); running raftkv's rows only"
  have_etcd=0
elif ! command -v protoc >/dev/null; then
  echo "protoc is missing, needed to build the etcd load generator (apt-get install -y protobuf-compiler); running raftkv's rows only"
  have_etcd=0
fi

RUN=""
cleanup() {
  if [[ -n $RUN ]]; then
    [[ -f $RUN/etcd.pids ]] && "$ANCHOR/cluster.sh" stop "$RUN" >/dev/null 2>&1 || true
    rm -rf "$RUN"
  fi
}
trap cleanup EXIT

if [[ $have_etcd == 1 ]]; then
  echo "== building the etcd load generator ($ANCHOR/loadgen)"
  LGT=$repo/target/etcd-loadgen
  cargo build --release -q --manifest-path "$ANCHOR/loadgen/Cargo.toml" --target-dir "$LGT"
  LG=$LGT/release/etcd-loadgen
  RUN=$(mktemp -d -t compare-etcd.XXXXXX)
  echo "== etcd $(etcd --version | awk 'NR==1{print $3}'): starting 3 members in $RUN"
  "$ANCHOR/cluster.sh" start "$RUN" >/dev/null
  EPS="http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793"
  for r in $ROWS; do
    read -r -a a <<<"$(row_args "$r" | head -1)"
    ops=$(row_args "$r" | tail -1)
    # shellcheck disable=SC2046
    j=$("$LG" --endpoints "$EPS" --max-secs 120 "${a[@]}" "$ops" $(etcd_extra "$r"))
    load=$(cut -d' ' -f1 /proc/loadavg)
    echo "{\"system\":\"etcd\",\"row\":\"$r\",\"load1\":$load,\"run\":$j}" | tee -a "$OUT"
  done
  "$ANCHOR/cluster.sh" stop "$RUN" >/dev/null
  rm -rf "$RUN"; RUN=""
fi

echo "== raftkv: kv-bench --spawn 3 (a fresh cluster per row)"
for r in $ROWS; do
  read -r -a a <<<"$(row_args "$r" | head -1)"
  ops=$(row_args "$r" | tail -1)
  j=$("$KVB" --spawn 3 --max-secs 120 --quiet --json "${a[@]}" "$ops")
  load=$(cut -d' ' -f1 /proc/loadavg)
  echo "{\"system\":\"raftkv\",\"row\":\"$r\",\"load1\":$load,\"run\":$j}" | tee -a "$OUT"
  if [[ $r != *-c1 ]]; then
    b=(); prev=""
    for x in "${a[@]}"; do
      # put-c256: 64 Clerks x 4 in flight, as etcd's --conns 64 (see the top)
      if [[ $r == put-c256 && $prev == --clients ]]; then x=64; fi
      b+=("$x"); prev=$x
    done
    depth=1; [[ $r == put-c256 ]] && depth=4
    j=$("$KVB" --spawn 3 --max-secs 120 --quiet --json "${b[@]}" "$ops" --pipeline "$depth")
    load=$(cut -d' ' -f1 /proc/loadavg)
    echo "{\"system\":\"raftkv-async\",\"row\":\"$r\",\"load1\":$load,\"run\":$j}" | tee -a "$OUT"
  fi
done

echo
echo "# $(date -u +'%F %H:%M UTC'), $(nproc) cores, load after: $(cut -d' ' -f1-3 /proc/loadavg); raw: $OUT"
python3 - "$OUT" <<'EOF'
import json, sys
rows, order = {}, []
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d["row"] not in order:
        order.append(d["row"])
    rows.setdefault(d["row"], {})[d["system"]] = d
def f(x, nd=0):
    return "-" if x is None else f"{x:,.{nd}f}"
print("| row | client | etcd ops/s | raftkv ops/s | ratio | etcd p50 ms | raftkv p50 ms | etcd p99 ms | raftkv p99 ms | raftkv p99.9 ms | load |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
g = lambda d, key: None if d is None else d.get(key)
for r in order:
    e = rows[r].get("etcd", {}).get("run")
    for system, client in (("raftkv", "threads"), ("raftkv-async", "async")):
        if system not in rows[r]:
            continue
        k = rows[r][system]["run"]
        ratio = f"{k['ops_per_sec'] / e['ops_per_sec']:.1f}x" if e and k and e["ops_per_sec"] else "-"
        load = "/".join(str(rows[r][s]["load1"]) for s in ("etcd", system) if s in rows[r])
        print(f"| {r} | {client}, {k.get('conns', '?')} conns | {f(g(e,'ops_per_sec'))} | {f(g(k,'ops_per_sec'))} | {ratio} | {f(g(e,'p50_ms'),2)} | "
              f"{f(g(k,'p50_ms'),2)} | {f(g(e,'p99_ms'),2)} | {f(g(k,'p99_ms'),2)} | {f(g(k,'p999_ms'),2)} | {load} |")
EOF
