#!/usr/bin/env bash
# The whole check, as CI runs it: install, generated code up to date, lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh train,dev,spark
# The Redis event backend is tested against a real redis-server (tests start their own on a loopback port).
if ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
    echo "installing redis-server with apt-get (the Redis event-store tests need it)"
    if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null 2>&1 \
           || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null; }; }; then
      echo "could not install redis-server; the Redis tests will be skipped" >&2
    fi
  else
    echo "redis-server is missing and there is no apt-get; the Redis tests will be skipped" >&2
  fi
fi
# The Spark trainer's test (tests/test_spark.py) runs a real Spark job, which needs Java 17 or newer.
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1; }
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ] 2>/dev/null; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
    echo "installing a Java 17+ runtime with apt-get (the Spark trainer test needs it)"
    if ! { $sudo apt-get update -q >/dev/null 2>&1; \
           $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless >/dev/null 2>&1 \
           || $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q default-jre-headless >/dev/null; }; then
      echo "could not install Java; the Spark test will be skipped" >&2
    fi
  else
    echo "Java 17+ is missing and there is no apt-get; the Spark test will be skipped" >&2
  fi
fi
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
. .venv/bin/activate
python scripts/generate_proto.py --check
ruff check .
mypy -p recsvc -p recsvc_training -p benchmarks -p tests
pytest "$@"
