#!/usr/bin/env bash
# Deploy one image to the cluster the current kubeconfig names, with an automatic rollback
# (.github/workflows/deploy.yml runs it; docs/deploy.md, "CI/CD workflows").
#
#   kubernetes-deploy.sh render      OVERLAY IMAGE@DIGEST  # the manifests, image pinned
#   kubernetes-deploy.sh deployments OVERLAY IMAGE@DIGEST  # the Deployments it rolls
#   kubernetes-deploy.sh apply       OVERLAY IMAGE@DIGEST  # deploy; roll back on failure
#
# OVERLAY is a kustomize directory (deploy/kubernetes/overlays/production). `apply`:
#   1. renders the overlay with the image pinned by digest (every tgfleet container);
#   2. records each existing Deployment's revision;
#   3. deletes the finished migration Job (its pod template cannot change), applies, and
#      waits for the new Job to complete;
#   4. waits for `kubectl rollout status` of every Deployment;
#   5. checks /readyz through the API Service (and $TGFLEET_URL/readyz when set);
# and when 3, 4 or 5 fails, undoes every Deployment to its recorded revision and exits 1.
# Needs kubectl (with its built-in kustomize) and curl. $ROLLOUT_TIMEOUT (default 600s, in
# seconds) bounds the migration Job and each rollout.
set -euo pipefail

usage() {
    echo "usage: $0 render|deployments|apply OVERLAY IMAGE@sha256:DIGEST" >&2
    exit 2
}

[ "$#" -eq 3 ] || usage
command=$1
overlay=$2
image=$3
[ -f "$overlay/kustomization.yaml" ] || { echo "no kustomization.yaml in $overlay" >&2; exit 2; }
[[ "$image" =~ ^[a-z0-9./_-]+(:[0-9]+)?/[a-z0-9./_-]+@sha256:[0-9a-f]{64}$ ]] \
    || { echo "not an image pinned by digest: $image" >&2; exit 2; }

# The name every manifest uses (docs/deploy.md); kustomize rewrites it to the pinned image.
manifest_image=ghcr.io/tgfleet/tgfleet
namespace=${TGFLEET_NAMESPACE:-tgfleet}
timeout=${ROLLOUT_TIMEOUT:-600s}
[[ "$timeout" =~ ^[0-9]+s$ ]] || { echo "ROLLOUT_TIMEOUT is in seconds (600s), not $timeout" >&2; exit 2; }
job=tgfleet-migrate
api_service=tgfleet-api

# A kustomization of our own around the overlay: its `images:` transformer pins the digest,
# whatever tag the overlay names. kustomize loads resources by relative path only.
render() {
    local wrapper status=0
    wrapper=$(mktemp -d)
    cat >"$wrapper/kustomization.yaml" <<KUSTOMIZATION
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$wrapper" "$overlay")
images:
  - name: $manifest_image
    newName: ${image%@*}
    digest: ${image#*@}
KUSTOMIZATION
    kubectl kustomize "$wrapper" || status=$?
    rm -rf "$wrapper"
    return "$status"
}

# The Deployments a rendered manifest holds (kustomize writes `kind:` and `metadata.name` at
# fixed indents), read offline: the cluster may lack some kinds' definitions.
deployments() {
    awk '/^---/ { if (kind == "Deployment" && name != "") print name; kind = ""; name = "" }
         /^kind: / { kind = $2 }
         /^  name: / { if (name == "") name = $2 }
         END { if (kind == "Deployment" && name != "") print name }' "$1"
}

log() { printf '==> %s\n' "$*" >&2; }

# Deployment name -> revision before this deploy (absent: the Deployment is new).
declare -A before=()

rollback() {
    local name
    log "rolling back"
    for name in "${!before[@]}"; do
        current=$(kubectl -n "$namespace" get deployment "$name" \
            -o jsonpath='{.metadata.annotations.deployment\.kubernetes\.io/revision}')
        if [ "$current" != "${before[$name]}" ]; then
            kubectl -n "$namespace" rollout undo "deployment/$name" --to-revision="${before[$name]}"
        fi
    done
    for name in "${!before[@]}"; do
        kubectl -n "$namespace" rollout status "deployment/$name" --timeout="$timeout" || true
    done
}

wait_for_migration() {
    local deadline=$((SECONDS + ${timeout%s})) state
    while [ "$SECONDS" -lt "$deadline" ]; do
        state=$(kubectl -n "$namespace" get job "$job" \
            -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type} {end}')
        case " $state " in
            *" Complete "*) return 0 ;;
            *" Failed "*)
                kubectl -n "$namespace" logs "job/$job" --all-containers --tail=50 >&2 || true
                return 1
                ;;
        esac
        sleep 5
    done
    echo "the migration Job did not finish within $timeout" >&2
    return 1
}

check_ready() {
    local port=18000 pid deadline status=1
    kubectl -n "$namespace" port-forward "service/$api_service" "$port:8000" >/dev/null 2>&1 &
    pid=$!
    deadline=$((SECONDS + 60))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if curl -fsS --max-time 5 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
            status=0
            break
        fi
        sleep 2
    done
    kill "$pid" 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        echo "/readyz did not answer 200 through service/$api_service within 60 s" >&2
        return 1
    fi
    if [ -n "${TGFLEET_URL:-}" ]; then
        curl -fsS --max-time 10 --retry 5 --retry-delay 3 --retry-all-errors \
            "${TGFLEET_URL%/}/readyz" >/dev/null \
            || { echo "$TGFLEET_URL/readyz did not answer 200" >&2; return 1; }
    fi
}

deploy() {
    local manifest name revision
    manifest=$(mktemp)
    # shellcheck disable=SC2064  # expand now: the trap removes this file
    trap "rm -f '$manifest'" EXIT
    render >"$manifest"
    mapfile -t names < <(deployments "$manifest")
    [ "${#names[@]}" -gt 0 ] || { echo "no Deployment in $overlay" >&2; exit 1; }

    for name in "${names[@]}"; do
        revision=$(kubectl -n "$namespace" get deployment "$name" --ignore-not-found \
            -o jsonpath='{.metadata.annotations.deployment\.kubernetes\.io/revision}')
        if [ -n "$revision" ]; then
            before[$name]=$revision
            log "deployment/$name is at revision $revision"
        else
            log "deployment/$name is new (nothing to roll back to)"
        fi
    done

    log "applying $overlay with $image"
    kubectl -n "$namespace" delete job "$job" --ignore-not-found --wait=true
    if ! kubectl apply -f "$manifest"; then
        rollback
        exit 1
    fi
    log "waiting for job/$job"
    if ! wait_for_migration; then
        rollback
        exit 1
    fi
    for name in "${names[@]}"; do
        log "waiting for deployment/$name"
        if ! kubectl -n "$namespace" rollout status "deployment/$name" --timeout="$timeout"; then
            rollback
            exit 1
        fi
    done
    log "checking /readyz"
    if ! check_ready; then
        rollback
        exit 1
    fi
    log "deployed $image"
}

case "$command" in
    render) render ;;
    deployments)
        manifest=$(mktemp)
        # shellcheck disable=SC2064  # expand now: the trap removes this file
        trap "rm -f '$manifest'" EXIT
        render >"$manifest"
        deployments "$manifest"
        ;;
    apply) deploy ;;
    *) usage ;;
esac
