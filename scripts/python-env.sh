# Sourced by the scripts: a project virtualenv in .venv (Debian's system Python refuses pip
# installs, PEP 668), with the given requirements installed. Sets $python to its interpreter.
#   ensure_python_env REQUIREMENTS_FILE
ensure_python_env() {
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv || {
      echo "cannot create a Python virtualenv: apt-get install python3-venv" >&2
      return 1
    }
  fi
  python=$(pwd)/.venv/bin/python
  "$python" -m pip install --quiet --disable-pip-version-check -r "$1"
  # testkit starts workers and the Python Socket.IO client with this interpreter.
  export SWARMQ_TEST_PYTHON="$python"
}
