#!/usr/bin/env bash
# `make demo`: Liqo's "Offloading a Service" tutorial on two local control planes (testenv),
# with the hosts running as local processes. Each step prints the command, then its real output.
#
#   make demo          run it, then tear everything down
#   KEEP=1 make demo   stop before the teardown and leave the clusters running (make demo-down)
#   NETWORK=0 make demo  skip the data path even as root
#
# As root (where network namespaces and iptables are available) the clusters run in testenv's
# network mode: london's pods are real processes, each host runs its gateway in its cluster's
# namespace, and the demo ends like the tutorial, with a client in newyork getting london's
# JSON through the reflected Service. Otherwise it stops at the reflected objects.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEMO_DIR="${DEMO_DIR:-$ROOT/.demo}"
ENV_DIR="$DEMO_DIR/env"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export PATH="$ROOT/bin:$TARGET_DIR/debug:$PATH"

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
# Prints a command the way the tutorial shows it, then runs it.
step() {
  printf '\n\033[1;36m$ %s\033[0m\n' "$*"
  eval "$@"
}

stop_hosts() {
  if [ -f "$DEMO_DIR/hosts.pid" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$DEMO_DIR/hosts.pid"
    rm -f "$DEMO_DIR/hosts.pid"
  fi
}

down() {
  stop_hosts
  if [ -d "$ENV_DIR" ]; then "$ROOT/bin/testenv" down --dir "$ENV_DIR" >/dev/null 2>&1 || true; fi
  rm -rf "$DEMO_DIR"
}

if [ "${1:-}" = "down" ]; then
  down
  echo "demo stopped"
  exit 0
fi

cleanup() {
  status=$?
  if [ "${KEEP:-0}" != 1 ] || [ "$status" -ne 0 ]; then
    down
  fi
  if [ "$status" -ne 0 ]; then
    echo "demo failed (exit $status); host logs were in $DEMO_DIR" >&2
  fi
}
trap cleanup EXIT

bold "Building liqoctl, liqo-host (with its wasm plugins) and testenv"
echo "(the first build compiles wasmtime, kube and Kubernetes from source: several minutes on 2 cores)"
make -C "$ROOT" --no-print-directory build
echo "building bin/testenv and bin/kubectl (go build; first time ~6 min, then seconds)..."
make -C "$ROOT" --no-print-directory testenv

down
mkdir -p "$DEMO_DIR"
NETWORK_MODE=0
if [ "${NETWORK:-1}" != 0 ] && [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v iptables >/dev/null; then
  NETWORK_MODE=1
fi
if [ "$NETWORK_MODE" = 1 ]; then
  bold "Starting two clusters, london and newyork, each in its own network namespace"
  mkdir -p "$DEMO_DIR/pod-bin"
  cp "$TARGET_DIR/debug/flights-service" "$DEMO_DIR/pod-bin/"
  "$ROOT/bin/testenv" up --dir "$ENV_DIR" --clusters london,newyork --network \
    --pod-binaries "$DEMO_DIR/pod-bin" >"$DEMO_DIR/up.out"
  cat "$DEMO_DIR/up.out"
  eval "$(grep '^export ' "$DEMO_DIR/up.out")"
  wan_of() { awk -v c="-$1" '$0 ~ "netns " && index($0, c"  wan") {print $NF}' "$DEMO_DIR/up.out"; }
  WAN_LONDON="$(wan_of london)"
  WAN_NEWYORK="$(wan_of newyork)"
  APP="$ROOT/examples/flights-service/deploy/app.yaml"
else
  bold "Starting two clusters, london and newyork"
  echo "(not root, or NETWORK=0: no data path; run as root to end with the tutorial's request)"
  eval "$("$ROOT/bin/testenv" up --dir "$ENV_DIR" --clusters london,newyork)"
  APP="$ROOT/examples/service-offloading/app.yaml"
fi
export KUBECONFIG="$KUBECONFIG_LONDON"

bold "Installing liqo in both clusters (the hosts run as local processes: --skip-deployment)"
step liqoctl install --cluster-id london --skip-deployment
step liqoctl install --cluster-id newyork --skip-deployment --kubeconfig "\$KUBECONFIG_NEWYORK"
for cluster in london newyork; do
  upper="$(echo "$cluster" | tr a-z A-Z)"
  kubeconfig_var="KUBECONFIG_$upper"
  if [ "$NETWORK_MODE" = 1 ]; then
    # In the cluster's namespace, like a pod: its gateway listens on the cluster's WAN address.
    wan_var="WAN_$upper"
    "$ROOT/bin/testenv" exec --dir "$ENV_DIR" --cluster "$cluster" -- \
      "$TARGET_DIR/debug/liqo-host" run --kubeconfig "${!kubeconfig_var}" --metrics-addr 127.0.0.1:0 \
      --plugin-cache-dir "$DEMO_DIR/plugin-cache" \
      --gateway-listen "${!wan_var}:7900" --gateway-endpoint "${!wan_var}:7901" \
      >"$DEMO_DIR/$cluster-host.log" 2>&1 &
  else
    liqo-host run --kubeconfig "${!kubeconfig_var}" --metrics-addr 127.0.0.1:0 \
      --plugin-cache-dir "$DEMO_DIR/plugin-cache" >"$DEMO_DIR/$cluster-host.log" 2>&1 &
  fi
  echo $! >>"$DEMO_DIR/hosts.pid"
  echo "liqo-host for $cluster running (pid $!, log $DEMO_DIR/$cluster-host.log)"
done
if [ "$NETWORK_MODE" = 1 ]; then
  # The peer command carries newyork's gateway once its host has published it.
  for _ in $(seq 1 60); do
    kubectl get configmap -n liqo liqo-gateway --kubeconfig "$KUBECONFIG_NEWYORK" >/dev/null 2>&1 && break
    sleep 1
  done
fi

bold "Peering london with newyork"
step 'PEER_NEW_YORK=$(liqoctl generate peer-command --only-command --kubeconfig "$KUBECONFIG_NEWYORK")'
step 'echo "$PEER_NEW_YORK" | bash'
step kubectl get foreignclusters

bold "Deploying the app in london and offloading its namespace"
step kubectl create namespace liqo-demo
step kubectl apply -f "$APP" -n liqo-demo
step liqoctl offload namespace liqo-demo --namespace-mapping-strategy EnforceSameName --pod-offloading-strategy Local

bold "The Service in newyork: its own ClusterIP, no pods"
# Reflection takes a moment (the provider grants the twin namespace first): wait for it.
for _ in $(seq 1 60); do
  kubectl get endpointslices -n liqo-demo --kubeconfig "$KUBECONFIG_NEWYORK" \
    -l kubernetes.io/service-name=flights-service -o name 2>/dev/null | grep -q . && break
  sleep 1
done
step kubectl get services --namespace liqo-demo
step kubectl get services --namespace liqo-demo --kubeconfig '"$KUBECONFIG_NEWYORK"'
step kubectl get pods --namespace liqo-demo --kubeconfig '"$KUBECONFIG_NEWYORK"'
step kubectl get endpointslices --namespace liqo-demo --kubeconfig '"$KUBECONFIG_NEWYORK"'

if [ "$NETWORK_MODE" = 1 ]; then
  bold "A client in newyork calls the Service: london answers, through the gateways"
  echo "(testenv has no cluster DNS: the client uses the ClusterIP newyork gave flights-service)"
  CLUSTER_IP="$(kubectl get service flights-service -n liqo-demo --kubeconfig "$KUBECONFIG_NEWYORK" -o jsonpath='{.spec.clusterIP}')"
  for _ in $(seq 1 60); do
    "$ROOT/bin/testenv" http-get --dir "$ENV_DIR" --cluster newyork "http://$CLUSTER_IP:7999/schedule" >/dev/null 2>&1 && break
    sleep 1
  done
  # testenv http-get sends the request from inside newyork's network namespace (no curl needed).
  step "testenv http-get --dir \"\$ENV_DIR\" --cluster newyork http://$CLUSTER_IP:7999/schedule"
  echo
  step kubectl get foreignclusters
  step kubectl get foreignclusters --kubeconfig '"$KUBECONFIG_NEWYORK"'
fi

if [ "${KEEP:-0}" = 1 ]; then
  bold "KEEP=1: the clusters and hosts keep running. To explore:"
  echo "export KUBECONFIG_LONDON=$KUBECONFIG_LONDON"
  echo "export KUBECONFIG_NEWYORK=$KUBECONFIG_NEWYORK"
  echo "export PATH=$ROOT/bin:$TARGET_DIR/debug:\$PATH"
  echo "Stop everything with: make demo-down"
  exit 0
fi

# --skip-confirm: run from a terminal, these destructive commands would ask first (as Liqo
# v1's do); the demo answers for the reader, as Liqo v1's tutorial pages write them.
bold "Tearing down, as the tutorial does"
step liqoctl unoffload namespace liqo-demo --skip-confirm
step liqoctl unpeer out-of-band newyork --skip-confirm
step liqoctl uninstall --skip-confirm
step liqoctl uninstall --skip-confirm --kubeconfig '"$KUBECONFIG_NEWYORK"'
stop_hosts
step liqoctl uninstall --skip-confirm --purge
step liqoctl uninstall --skip-confirm --kubeconfig '"$KUBECONFIG_NEWYORK"' --purge
bold "Done: everything the demo created is gone."
