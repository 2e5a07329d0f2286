#!/usr/bin/env bash
# A Cairn network across real network interfaces on one machine: every node in a Linux
# network namespace of its own, with its own IP address on a private bridge, so discovery
# (mDNS multicast), the libp2p control plane and the iroh data plane all cross real
# (virtual) Ethernet links instead of loopback. Needs root (ip netns) and iproute2.
#
#   deploy/netns-network.sh up   DIR [NODES] [SUBNETS]
#                                             start NODES nodes (default 6) spread over
#                                             SUBNETS /24s (default 1)
#   deploy/netns-network.sh exec DIR CMD...    run CMD in the client namespace
#   deploy/netns-network.sh down DIR           stop the nodes, remove the namespaces
#
# Layout, for a tag T derived from DIR:
#   namespace cairn-T-br   the bridge br0, and nothing else
#   namespace cairn-T-c    a client at 10.87.0.2 (push, pull, status from here)
#   namespace cairn-T-nI   node I at 10.87.(I mod SUBNETS).(10+I), data in DIR/node-I
# Every address is a /16 on one bridge, so all reach each other directly, while nodes in
# different /24s are different failure domains to Cairn's placement: no two pieces of a
# stripe go into one /24. `cut DIR S` takes the nodes of 10.87.S.0/24 off the bridge.
# Node 0 is started first and the others find it (and each other) by mDNS alone; no
# bootstrap address is passed. DIR/network.json has the format `cairn network up`
# writes, so `deploy/netns-network.sh exec DIR cairn network status --dir DIR` works.
#
# Traffic never leaves these namespaces: the bridge has no uplink and no route out.
set -euo pipefail

CAIRN="${CAIRN:-$(command -v cairn || echo target/release/cairn)}"
SUBNET_PREFIX=10.87
SUBNET=$SUBNET_PREFIX.0
subnets=1

die() { echo "netns-network: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: $0 up DIR [NODES] [SUBNETS] | exec DIR CMD... | cut DIR S | down DIR"
cmd=$1
dir=$2
shift 2

[ "$(id -u)" -eq 0 ] || die "needs root (it creates network namespaces)"
command -v ip >/dev/null || die "needs iproute2 (ip)"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
tag=$(printf '%s' "$dir" | cksum | awk '{printf "%06d", $1 % 1000000}')
ns_br="cairn-$tag-br"
ns_c="cairn-$tag-c"
ns_node() { echo "cairn-$tag-n$1"; }

down() {
  if [ -f "$dir/pids" ]; then
    while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done <"$dir/pids"
    for _ in $(seq 1 100); do
      alive=0
      while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$dir/pids"
      [ $alive -eq 0 ] && break
      sleep 0.1
    done
    while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$dir/pids"
    rm -f "$dir/pids"
  fi
  for ns in $(ip netns list | awk '{print $1}' | grep "^cairn-$tag-" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -f "$dir/network.json"
}

# Puts namespace $1 on the bridge with address $2, through a veth pair named after $3.
attach() {
  local ns=$1 addr=$2 name=$3
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "v$tag$name" type veth peer name "b$tag$name"
  ip link set "v$tag$name" netns "$ns"
  ip link set "b$tag$name" netns "$ns_br"
  ip -n "$ns" link set "v$tag$name" name eth0
  ip -n "$ns" addr add "$addr/16" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns_br" link set "b$tag$name" master br0
  ip -n "$ns_br" link set "b$tag$name" up
}

# Node $1's address.
node_addr() { echo "$SUBNET_PREFIX.$(($1 % subnets)).$((10 + $1))"; }

up() {
  local nodes=${1:-6}
  subnets=${2:-1}
  [ "$nodes" -ge 1 ] && [ "$nodes" -le 200 ] || die "NODES must be 1..200"
  [ "$subnets" -ge 1 ] && [ "$subnets" -le 200 ] || die "SUBNETS must be 1..200"
  # All in one /24, the nodes are one site: told apart by node, not by subnet.
  local one_site=""
  [ "$subnets" -eq 1 ] && one_site="--no-subnet-domains"
  [ -x "$CAIRN" ] || die "no cairn binary at $CAIRN (build it, or set CAIRN=path)"
  [ -f "$dir/network.json" ] && die "$dir already holds a network; run '$0 down $dir' first"
  down
  trap 'down' ERR
  trap 'down; exit 130' INT TERM
  ip netns add "$ns_br"
  ip -n "$ns_br" link set lo up
  ip -n "$ns_br" link add br0 type bridge
  ip -n "$ns_br" link set br0 up
  attach "$ns_c" "$SUBNET.2" c
  : >"$dir/pids"
  local entries=()
  for i in $(seq 0 $((nodes - 1))); do
    local ns addr data
    ns=$(ns_node "$i")
    addr=$(node_addr "$i")
    data="$dir/node-$i"
    mkdir -p "$data"
    attach "$ns" "$addr" "$i"
    # mDNS is on (the default): the nodes discover each other on the bridge.
    ip netns exec "$ns" env CAIRN_LOG="${CAIRN_LOG:-info}" "$CAIRN" node run \
      --data-dir "$data" --listen "$addr:7420" --http "$addr:7421" \
      --announce-secs 5 $one_site ${CAIRN_NODE_ARGS:-} >"$data/node.log" 2>&1 &
    echo $! >>"$dir/pids"
    # The identity is written at start: wait for the node's marker to learn its peer id.
    for _ in $(seq 1 300); do [ -f "$data/node.json" ] && break; sleep 0.1; done
    [ -f "$data/node.json" ] || { tail -20 "$data/node.log" >&2; die "node $i did not start"; }
    local peer
    peer=$(sed -n 's/.*"peer": *"\([^"]*\)".*/\1/p' "$data/node.json" | head -1)
    entries+=("{\"peer\":\"$peer\",\"http\":\"http://$addr:7421\",\"data_dir\":\"$data\",\"pid\":$(tail -1 "$dir/pids"),\"log\":\"$data/node.log\",\"args\":[]}")
  done
  (IFS=,; echo "{\"nodes\":[${entries[*]}]}") >"$dir/network.json"
  # Every node sees all the others, found by mDNS across the bridge.
  local want=$((nodes - 1))
  for i in $(seq 0 $((nodes - 1))); do
    local ok=0
    for _ in $(seq 1 300); do
      n=$(ip netns exec "$ns_c" "$CAIRN" node status --http "http://$(node_addr "$i"):7421" --json 2>/dev/null \
        | tr -d '\n ' | sed -n 's/.*"peers":\[\([^]]*\)\].*/\1/p' | tr ',' '\n' | grep -c . || true)
      if [ "${n:-0}" -ge "$want" ]; then ok=1; break; fi
      sleep 0.2
    done
    [ $ok -eq 1 ] || { tail -20 "$dir/node-$i/node.log" >&2; die "node $i did not find the other $want nodes by mDNS"; }
  done
  trap - ERR INT TERM
  echo "$nodes nodes up in namespaces cairn-$tag-n*, in $subnets /24s of $SUBNET_PREFIX.0.0/16; client namespace $ns_c"
  sed -n 's/.*"peer":"\([^"]*\)".*/\1/p' "$dir/network.json" >/dev/null
  echo "network file: $dir/network.json"
}

case "$cmd" in
  up) up "$@" ;;
  exec) [ $# -ge 1 ] || die "exec needs a command"; exec ip netns exec "$ns_c" "$@" ;;
  cut)
    [ $# -eq 1 ] || die "cut needs a subnet number S (10.87.S.0/24)"
    for ns in $(ip netns list | awk '{print $1}' | grep "^cairn-$tag-n" || true); do
      if ip -n "$ns" -4 addr show dev eth0 | grep -q "inet $SUBNET_PREFIX\.$1\."; then
        ip -n "$ns" link set eth0 down
        echo "cut $ns"
      fi
    done ;;
  down) down; echo "stopped; data kept in $dir" ;;
  *) die "unknown command $cmd (up, exec, cut, down)" ;;
esac
