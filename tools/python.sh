# Sourced by the tools' shell scripts: sets PYTHON, the interpreter they run.
# $PYTHON when set, else the project's .venv/bin/python when it exists, else
# the first python on PATH.
if [ -z "${PYTHON:-}" ]; then
    _MMPETL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if [ -x "$_MMPETL_ROOT/.venv/bin/python" ]; then
        PYTHON="$_MMPETL_ROOT/.venv/bin/python"
    else
        PYTHON=python
    fi
    unset _MMPETL_ROOT
fi
