# Sourced by the scripts: where the cached tools live, on PATH.
export KAFKA_ESM_CACHE="${KAFKA_ESM_CACHE:-$HOME/.cache/kafka-esm}"
export PATH="$KAFKA_ESM_CACHE/tansu/bin:$KAFKA_ESM_CACHE/node/node_modules/.bin:$KAFKA_ESM_CACHE/py/bin:$PATH"
