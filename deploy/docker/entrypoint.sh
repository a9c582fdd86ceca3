#!/bin/sh
# Container entrypoint: optionally build TensorRT engines for this host's GPU, then exec the
# service so it is PID 1's only child and receives SIGTERM directly (clean consumer close).
#
# SURVEY_CLASSIFIER_BUILD_ENGINES=1 (the GPU image's default) builds engines before "run";
# the build reuses what is already in the engine cache (engine.cache_dir, a volume), so only the
# first start on a new GPU model or TensorRT version pays for it. Secrets are never arguments
# here: they arrive as environment variables or mounted files read by the service itself.
set -eu

if [ "${1:-}" = "run" ] && [ "${SURVEY_CLASSIFIER_BUILD_ENGINES:-0}" = "1" ]; then
    echo '{"event": "building TensorRT engines for this GPU before start", "logger": "entrypoint"}'
    survey-classifier engines build --backend tensorrt
fi

exec survey-classifier "$@"
