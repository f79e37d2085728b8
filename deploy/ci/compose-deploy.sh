#!/usr/bin/env bash
# Roll a compose host to a new tgfleet image, rolling back to the image it ran before when the
# new one does not come up healthy (.github/workflows/deploy-compose.yml sends this script
# over SSH; an operator can run it on the host by hand the same way).
#
#   compose-deploy.sh DIRECTORY IMAGE:TAG [HEALTH_URL]
#
# DIRECTORY holds the host's compose.yaml (deploy/compose/) and its .env, which names the
# image as TGFLEET_IMAGE=... (compose.yaml reads ${TGFLEET_IMAGE}). The script
#   1. records the image the running api container was started from (else .env's);
#   2. writes the new TGFLEET_IMAGE into .env, pulls, `docker compose up -d --wait`;
#   3. checks HEALTH_URL (default http://127.0.0.1:8000/readyz) for an HTTP 200;
# and when 2 or 3 fails, writes the recorded image back, `up -d --wait` again, exits 1.
# COMPOSE (default "docker compose") and DOCKER (default "docker") may name other commands
# (tests/deploy/test_workflows.py runs it with podman-compose and podman); HEALTH_TIMEOUT is
# how long /readyz may take (60 s), WAIT_TIMEOUT how long `up --wait` (300 s).
set -euo pipefail

[ "$#" -ge 2 ] && [ "$#" -le 3 ] || {
    echo "usage: $0 DIRECTORY IMAGE:TAG [HEALTH_URL]" >&2
    exit 2
}
directory=$1
image=$2
health_url=${3:-http://127.0.0.1:8000/readyz}
read -r -a compose <<<"${COMPOSE:-docker compose}"
read -r -a docker <<<"${DOCKER:-docker}"
wait_timeout=${WAIT_TIMEOUT:-300}
health_timeout=${HEALTH_TIMEOUT:-60}

[[ "$image" =~ ^[a-z0-9./_:-]+:[A-Za-z0-9_.-]+$ ]] || { echo "not an image:tag: $image" >&2; exit 2; }
cd "$directory"
touch .env

log() { printf '==> %s\n' "$*" >&2; }

set_image() {
    local rest
    rest=$(grep -v '^TGFLEET_IMAGE=' .env || true)
    printf '%s\nTGFLEET_IMAGE=%s\n' "$rest" "$1" | sed '/^$/d' >.env.next
    chmod --reference=.env .env.next
    mv .env.next .env
}

up() {
    "${compose[@]}" pull && "${compose[@]}" up -d --wait --wait-timeout "$wait_timeout"
}

healthy() {
    local deadline=$((SECONDS + health_timeout))
    while [ "$SECONDS" -lt "$deadline" ]; do
        curl -fsS --max-time 5 -o /dev/null "$health_url" && return 0
        sleep 2
    done
    echo "$health_url did not answer 200 within $health_timeout s" >&2
    return 1
}

previous=""
container=$("${compose[@]}" ps --quiet api 2>/dev/null | head -n 1 || true)
if [ -n "$container" ]; then
    previous=$("${docker[@]}" inspect --format '{{.Config.Image}}' "$container")
fi
if [ -z "$previous" ]; then
    previous=$(sed -n 's/^TGFLEET_IMAGE=//p' .env | tail -n 1)
fi
log "running: ${previous:-nothing}; deploying: $image"

set_image "$image"
if up && healthy; then
    log "deployed $image"
    exit 0
fi

if [ -z "$previous" ]; then
    echo "deploying $image failed and no previous image is known to roll back to" >&2
    exit 1
fi
log "deploying $image failed: rolling back to $previous"
set_image "$previous"
"${compose[@]}" up -d --wait --wait-timeout "$wait_timeout" || true
healthy || echo "the rollback to $previous is not healthy either" >&2
exit 1
