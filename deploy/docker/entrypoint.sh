#!/bin/sh
# Container entrypoint: optionally build TensorRT engines for this host's GPU, then exec the
# service so it receives SIGTERM directly (clean batch flush, commit and group leave).
#
# SURVEY_CLASSIFIER_BUILD_ENGINES=1 (the GPU image's default) builds engines before "run" into
# the same cache the service reads (engine.cache_dir; the images set SC__ENGINE__CACHE_DIR, which
# overrides the TOML). Engines already in the cache (a volume) are reused, so only the first
# start on a new GPU model or TensorRT version pays for the build. The models are
# SC__ENGINE__MODELS when set (the service's own list), else all registered models.
# Secrets are never arguments here: they arrive as environment variables or mounted files.
set -eu

if [ "${1:-}" = "run" ] && [ "${SURVEY_CLASSIFIER_BUILD_ENGINES:-0}" = "1" ]; then
    echo '{"event": "building TensorRT engines for this GPU before start", "logger": "entrypoint"}'
    survey-classifier engines build --backend tensorrt \
        --cache-dir "${SC__ENGINE__CACHE_DIR:-/var/cache/survey-classifier/engines}" \
        --models "${SC__ENGINE__MODELS:-all}"
fi

exec survey-classifier "$@"
