#!/usr/bin/env bash
# What a deploy workflow run deploys (.github/workflows/deploy.yml, deploy-compose.yml): reads
# the triggering event from the environment and prints `environment=`, `tag=` and `ref=` lines
# for $GITHUB_OUTPUT. An empty environment means: nothing to deploy (the reason on stderr).
#
#   EVENT=workflow_run       RUN_WORKFLOW (CI | Release), RUN_EVENT, RUN_CONCLUSION,
#                            RUN_REPOSITORY, RUN_BRANCH (head_branch), RUN_SHA (head_sha)
#   EVENT=workflow_dispatch  INPUT_ENVIRONMENT (dev | production), INPUT_VERSION (v1.2.3, or
#                            a commit's 40-hex SHA for dev)
#   GITHUB_REPOSITORY        this repository (owner/name)
#
# dev gets every commit pushed to main that passed CI (image tag sha-<commit>, pushed by
# ci.yml); production gets every release (v1.2.3 -> image tag 1.2.3, pushed by release.yml)
# but not a pre-release (v1.3.0-rc.1), which only a workflow_dispatch deploys.
set -euo pipefail

release='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.]+)?$'
commit='^[0-9a-f]{40}$'

fail() {
    echo "$*" >&2
    exit 1
}

skip() {
    echo "nothing to deploy: $*" >&2
    printf 'environment=\ntag=\nref=\n'
    exit 0
}

emit() {
    printf 'environment=%s\ntag=%s\nref=%s\n' "$1" "$2" "$3"
}

case "${EVENT:?EVENT is required}" in
    workflow_run)
        [ "${RUN_CONCLUSION:-}" = success ] || skip "${RUN_WORKFLOW:-} concluded ${RUN_CONCLUSION:-}"
        [ "${RUN_EVENT:-}" = push ] || skip "${RUN_WORKFLOW:-} ran for a ${RUN_EVENT:-} event, not a push"
        [ "${RUN_REPOSITORY:-}" = "${GITHUB_REPOSITORY:?}" ] \
            || skip "the run's commit is from ${RUN_REPOSITORY:-}, not $GITHUB_REPOSITORY"
        [[ "${RUN_SHA:-}" =~ $commit ]] || fail "not a commit SHA: ${RUN_SHA:-}"
        case "${RUN_WORKFLOW:-}" in
            CI)
                [ "${RUN_BRANCH:-}" = main ] || skip "CI ran on ${RUN_BRANCH:-}, not main"
                emit dev "sha-$RUN_SHA" "$RUN_SHA"
                ;;
            Release)
                [[ "${RUN_BRANCH:-}" =~ $release ]] || fail "not a release tag: ${RUN_BRANCH:-}"
                [ -z "${BASH_REMATCH[4]}" ] || skip "$RUN_BRANCH is a pre-release"
                emit production "${RUN_BRANCH#v}" "$RUN_SHA"
                ;;
            *) fail "unexpected workflow: ${RUN_WORKFLOW:-}" ;;
        esac
        ;;
    workflow_dispatch)
        version=${INPUT_VERSION:-}
        case "${INPUT_ENVIRONMENT:-}" in
            dev | production) ;;
            *) fail "environment must be dev or production, not ${INPUT_ENVIRONMENT:-}" ;;
        esac
        if [[ "$version" =~ $release ]]; then
            emit "$INPUT_ENVIRONMENT" "${version#v}" "refs/tags/$version"
        elif [[ "$version" =~ $commit ]] && [ "$INPUT_ENVIRONMENT" = dev ]; then
            emit dev "sha-$version" "$version"
        else
            [ "$INPUT_ENVIRONMENT" = production ] \
                || fail "version must be a release tag (v1.2.3) or a commit SHA, not: $version"
            fail "version must be a release tag (v1.2.3), not: $version"
        fi
        ;;
    *) fail "unexpected event: $EVENT" ;;
esac
