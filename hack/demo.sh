#!/usr/bin/env bash
# `make demo`: Liqo's "Offloading a Service" tutorial on two local control planes (testenv),
# with the hosts running as local processes. Each step prints the command, then its real output.
#
#   make demo          run it, then tear everything down
#   KEEP=1 make demo   stop before the teardown and leave the clusters running (make demo-down)
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
bold "Starting two clusters, london and newyork"
eval "$("$ROOT/bin/testenv" up --dir "$ENV_DIR" --clusters london,newyork)"
export KUBECONFIG="$KUBECONFIG_LONDON"

bold "Installing liqo in both clusters (the hosts run as local processes: --skip-deployment)"
step liqoctl install --cluster-id london --skip-deployment
step liqoctl install --cluster-id newyork --skip-deployment --kubeconfig "\$KUBECONFIG_NEWYORK"
for cluster in london newyork; do
  kubeconfig_var="KUBECONFIG_$(echo "$cluster" | tr a-z A-Z)"
  liqo-host run --kubeconfig "${!kubeconfig_var}" --metrics-addr 127.0.0.1:0 \
    --plugin-cache-dir "$DEMO_DIR/plugin-cache" >"$DEMO_DIR/$cluster-host.log" 2>&1 &
  echo $! >>"$DEMO_DIR/hosts.pid"
  echo "liqo-host for $cluster running (pid $!, log $DEMO_DIR/$cluster-host.log)"
done

bold "Peering london with newyork"
step 'PEER_NEW_YORK=$(liqoctl generate peer-command --only-command --kubeconfig "$KUBECONFIG_NEWYORK")'
step 'echo "$PEER_NEW_YORK" | bash'
step kubectl get foreignclusters

bold "Deploying the app in london and offloading its namespace"
step kubectl create namespace liqo-demo
step kubectl apply -f "$ROOT/examples/service-offloading/app.yaml" -n liqo-demo
step liqoctl offload namespace liqo-demo --namespace-mapping-strategy EnforceSameName --pod-offloading-strategy Local

bold "The Service in newyork: its own ClusterIP, no pods"
step kubectl get services --namespace liqo-demo
step kubectl get services --namespace liqo-demo --kubeconfig '"$KUBECONFIG_NEWYORK"'
step kubectl get pods --namespace liqo-demo --kubeconfig '"$KUBECONFIG_NEWYORK"'
step kubectl get endpointslices --namespace liqo-demo --kubeconfig '"$KUBECONFIG_NEWYORK"'

if [ "${KEEP:-0}" = 1 ]; then
  bold "KEEP=1: the clusters and hosts keep running. To explore:"
  echo "export KUBECONFIG_LONDON=$KUBECONFIG_LONDON"
  echo "export KUBECONFIG_NEWYORK=$KUBECONFIG_NEWYORK"
  echo "export PATH=$ROOT/bin:$TARGET_DIR/debug:\$PATH"
  echo "Stop everything with: make demo-down"
  exit 0
fi

bold "Tearing down, as the tutorial does"
step liqoctl unoffload namespace liqo-demo
step liqoctl unpeer out-of-band newyork
step liqoctl uninstall
step liqoctl uninstall --kubeconfig '"$KUBECONFIG_NEWYORK"'
stop_hosts
step liqoctl uninstall --purge
step liqoctl uninstall --kubeconfig '"$KUBECONFIG_NEWYORK"' --purge
bold "Done: everything the demo created is gone."
