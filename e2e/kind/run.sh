#!/usr/bin/env bash
# End-to-end check of the operator on a real cluster (kind, k3d, or any other):
# installs the CRD, runs the operator, applies a Chaincode with a prebuilt image, waits for its Pod,
# plays the endorser's part (Registered=True with field manager chaincode-endorser), waits for Ready,
# then deletes the Chaincode and waits for its Pod to go.
#
#   KUBECONFIG=...            the cluster (required)
#   OPERATOR_BIN=...          operator binary run outside the cluster (default: target/debug/chaincode-operator)
#   OPERATOR_IMAGE=...        instead: install the Helm chart with this image (needs helm; image must be
#                             pullable by the cluster, e.g. `kind load docker-image`)
#   CHAINCODE_E2E_IMAGE=...   prebuilt chaincode image by digest (default: PAUSE_IMAGE from $KUBE_LAB/cluster.env, else registry.k8s.io/pause:3.9)
#
# Create a cluster first, e.g. `kind create cluster --name chaincode-e2e` or `k3d cluster create chaincode-e2e`.
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${KUBECONFIG:?set KUBECONFIG to the test cluster}"
NS="chaincode-e2e-$$"
# Offline clusters (the kube kit) have their pause image by digest in $KUBE_LAB/cluster.env.
LAB_PAUSE="$(sed -n 's/^PAUSE_IMAGE=//p' "${KUBE_LAB:-/tmp/kube}/cluster.env" 2>/dev/null || true)"
IMAGE="${CHAINCODE_E2E_IMAGE:-${LAB_PAUSE:-registry.k8s.io/pause@sha256:7031c1b283388d2c2e09b57badb803c05ebed362dc88d84b480cc47f72a21097}}"
IMAGE_NAME="${IMAGE%@*}"
IMAGE_DIGEST="${IMAGE#*@}"
OPERATOR_BIN="${OPERATOR_BIN:-target/debug/chaincode-operator}"
operator_pid=""

cleanup() {
    [ -n "$operator_pid" ] && kill "$operator_pid" 2>/dev/null || true
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
    if [ -n "${OPERATOR_IMAGE:-}" ]; then helm uninstall chaincode-operator -n "$NS-system" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

wait_for() { # description, timeout seconds, command...
    local what="$1" timeout="$2"; shift 2
    for _ in $(seq "$timeout"); do
        if "$@" >/dev/null 2>&1; then echo "ok: $what"; return 0; fi
        sleep 1
    done
    echo "timed out waiting for: $what" >&2
    kubectl -n "$NS" get chaincodes,pods,secrets,events -o wide >&2 || true
    return 1
}

echo "== CRD"
# --force-conflicts: take over fields of a CRD applied client-side or by Helm before.
kubectl apply --server-side --force-conflicts -f crds/chaincode.yaml
kubectl wait --for=condition=Established crd/chaincodes.fabric.chaincode.dev --timeout=60s

echo "== operator"
kubectl create namespace "$NS"
if [ -n "${OPERATOR_IMAGE:-}" ]; then
    helm install chaincode-operator charts/chaincode-operator -n "$NS-system" --create-namespace \
        --set image.repository="${OPERATOR_IMAGE%:*}" --set image.tag="${OPERATOR_IMAGE##*:}" --wait
else
    "$OPERATOR_BIN" controller --namespace "$NS" --http-addr 127.0.0.1:0 &
    operator_pid=$!
fi

echo "== Chaincode with a prebuilt image"
kubectl -n "$NS" apply -f - <<YAML
apiVersion: fabric.chaincode.dev/v1alpha1
kind: Chaincode
metadata:
  name: sample
spec:
  packageId: "sample_1.0:0000000000000000000000000000000000000000000000000000000000000001"
  platform: image
  image:
    name: "$IMAGE_NAME"
    digest: "$IMAGE_DIGEST"
  peer:
    address: peer0.example:7052
    mspId: Org1MSP
  startupTimeoutSeconds: 600
YAML

pod_running() {
    [ "$(kubectl -n "$NS" get pods -l fabric.chaincode.dev/chaincode=sample \
        -o jsonpath='{.items[0].status.phase}')" = Running ]
}
wait_for "chaincode Pod running" 180 pod_running
phase_is() { [ "$(kubectl -n "$NS" get cc sample -o jsonpath='{.status.phase}')" = "$1" ]; }
wait_for "phase Running (launched, not registered)" 60 phase_is Running

echo "== endorser reports registration (its own field manager)"
generation="$(kubectl -n "$NS" get cc sample -o jsonpath='{.metadata.generation}')"
kubectl -n "$NS" apply --server-side --subresource=status --field-manager=chaincode-endorser -f - <<YAML
apiVersion: fabric.chaincode.dev/v1alpha1
kind: Chaincode
metadata:
  name: sample
status:
  conditions:
    - type: Registered
      status: "True"
      reason: Registered
      message: chaincode registered with the endorser
      observedGeneration: $generation
      lastTransitionTime: "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
YAML
wait_for "phase Ready" 60 phase_is Ready
registered="$(kubectl -n "$NS" get cc sample -o jsonpath='{.status.conditions[?(@.type=="Registered")].status}')"
[ "$registered" = True ] || { echo "the operator clobbered Registered" >&2; exit 1; }
kubectl -n "$NS" get cc sample

echo "== deletion removes what the Chaincode owns"
kubectl -n "$NS" delete cc sample --wait=true
no_pods() { [ -z "$(kubectl -n "$NS" get pods -l fabric.chaincode.dev/chaincode=sample -o name)" ]; }
wait_for "owned Pod gone" 120 no_pods
echo "e2e: PASS"
