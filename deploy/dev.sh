#!/usr/bin/env bash
# One entry point for a fresh machine: sets up what it needs, idempotently, then runs
#   deploy/dev.sh demo   the live demo (local Kafka, worker, sink, sample events, a query)
#   deploy/dev.sh test   lint, type checks and the whole test suite (real Kafka, real ClickHouse)
#   deploy/dev.sh setup  only the set-up
# Environment: XBORDER_* settings (see README); PYTHON picks the interpreter (3.11+).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="$repo/.venv"
python="${PYTHON:-python3}"

say() { printf '[dev.sh] %s\n' "$*" >&2; }

need_tools() {
  local missing=()
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  ldconfig -p 2>/dev/null | grep 'libsodium\.so\.' >/dev/null || missing+=(libsodium23)  # OPRF
  command -v kcat >/dev/null 2>&1 || missing+=(kcat)  # the operators' tool the docs use
  if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing ${missing[*]} (needed to run Apache Kafka, the OPRF tokenizer and the docs' kcat lines)"
      apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      say "missing ${missing[*]}: install them (Java 17+ and Maven run the local Kafka; libsodium the OPRF tokenizer; kcat the docs' operator commands)"
      exit 1
    fi
  fi
}

setup_venv() {
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "Python 3.11+ is required; set PYTHON=/path/to/python3.11"
    exit 1
  fi
  [ -x "$venv/bin/python" ] || { say "creating virtualenv $venv"; "$python" -m venv "$venv"; }
  local stamp="$venv/.xborder-installed"
  local want
  want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing dependencies into $venv (first run takes a minute or two)"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e ".[dev]"
    echo "$want" > "$stamp"
  fi
}

setup() {
  need_tools
  setup_venv
  "$venv/bin/xborder" kafka fetch >/dev/null
}

case "${1:-}" in
  setup)
    setup ;;
  demo)
    setup
    exec "$venv/bin/xborder" demo "${@:2}" ;;
  test)
    setup
    say "ruff"
    "$venv/bin/ruff" check .
    "$venv/bin/ruff" format --check .
    say "mypy"
    "$venv/bin/mypy"
    say "pytest"
    exec "$venv/bin/pytest" "${@:2}" ;;
  *)
    echo "usage: deploy/dev.sh demo|test|setup [args...]" >&2
    exit 64 ;;
esac
