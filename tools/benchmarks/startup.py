# Copyright (c) mmpetl contributors. All rights reserved.
"""What the start-up hook (``mmpetl_bases.pth``, see ``_mmpetl_bases.py``)
costs a Python start that never reads an ``mmpetl::`` config.

Two bare virtual environments of this interpreter are made in a temporary
folder, one with the hook in its site-packages and one without, and
``python -c pass`` runs in each in turn (interleaved, so that the load of a
shared machine hits both alike), ``--repeats`` times each. Printed: the CPU
time (user + system) and wall time of a start, median and mean ± standard
error, and their ratio with / without::

    python tools/benchmarks/startup.py [--repeats 300] [--hook-dir DIR]

``--hook-dir``: where ``mmpetl_bases.pth`` and ``_mmpetl_bases.py`` are
(default: this checkout, else the installed ones), e.g. an older version to
compare with.
"""
import argparse
import importlib.util
import os
import os.path as osp
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

#: The checkout, or mmpetl/.mim of an installed wheel.
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HOOK_FILES = ('mmpetl_bases.pth', '_mmpetl_bases.py')
#: The environment of the starts: this one without PYTHON* variables (no
#: PYTHONPATH, PYTHONSTARTUP, ... that would add work to both).
ENV = {k: v for k, v in os.environ.items() if not k.startswith('PYTHON')}


def default_hook_dir() -> str:
    """This checkout's hook, else the one installed next to mmpetl."""
    if all(osp.isfile(osp.join(ROOT, f)) for f in HOOK_FILES):
        return ROOT
    spec = importlib.util.find_spec('_mmpetl_bases')
    if spec is None or spec.origin is None:
        sys.exit('error: no _mmpetl_bases.py here nor installed; give '
                 '--hook-dir')
    return osp.dirname(spec.origin)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {text}')
    return value


def make_venv(path: str, hook_dir=None) -> str:
    """A bare venv of this interpreter (no pip), the hook copied into its
    site-packages when ``hook_dir`` is given; returns its python."""
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', path],
                   check=True)
    python = osp.join(path, 'bin', 'python')
    if hook_dir is not None:
        site = subprocess.run(
            [python, '-c', 'import sysconfig; '
             'print(sysconfig.get_paths()["purelib"])'],
            check=True, capture_output=True, text=True).stdout.strip()
        for name in HOOK_FILES:
            shutil.copyfile(osp.join(hook_dir, name), osp.join(site, name))
    return python


def one_start(python: str) -> tuple:
    """(CPU seconds, wall seconds) of ``python -c pass``."""
    start = time.perf_counter()
    process = subprocess.Popen([python, '-c', 'pass'], env=ENV)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        sys.exit(f'error: {python} -c pass exited {process.returncode}')
    return usage.ru_utime + usage.ru_stime, wall


def summary(values) -> str:
    mean = statistics.fmean(values)
    error = statistics.stdev(values) / len(values)**0.5
    return (f'median {statistics.median(values) * 1e3:6.2f} ms, mean '
            f'{mean * 1e3:6.2f} ± {error * 1e3:.2f} ms')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeats', type=positive, default=300,
                        help='starts of each interpreter (default 300)')
    parser.add_argument('--hook-dir', help='folder of mmpetl_bases.pth and '
                        '_mmpetl_bases.py (default: this checkout)')
    args = parser.parse_args()
    hook_dir = args.hook_dir or default_hook_dir()
    missing = [f for f in HOOK_FILES if not osp.isfile(osp.join(hook_dir, f))]
    if missing:
        sys.exit(f'error: --hook-dir {hook_dir} has no {", ".join(missing)}')
    with tempfile.TemporaryDirectory(prefix='mmpetl_startup_') as tmp:
        pythons = dict(without=make_venv(osp.join(tmp, 'without')),
                       with_hook=make_venv(osp.join(tmp, 'with'), hook_dir))
        times = {name: ([], []) for name in pythons}
        for python in pythons.values():  # warm the file cache
            one_start(python)
        for _ in range(args.repeats):
            for name, python in pythons.items():
                cpu, wall = one_start(python)
                times[name][0].append(cpu)
                times[name][1].append(wall)
    load = os.getloadavg()[0]
    print(f'python -c pass, {args.repeats} starts each, interleaved; '
          f'Python {sysconfig.get_python_version()}, hook from {hook_dir}, '
          f'load average {load:.2f} on {os.cpu_count()} CPUs')
    for kind, i in (('CPU', 0), ('wall', 1)):
        without, with_hook = times['without'][i], times['with_hook'][i]
        print(f'  {kind:4} without hook: {summary(without)}')
        print(f'  {kind:4} with hook:    {summary(with_hook)}')
        median = statistics.median(with_hook) / statistics.median(without)
        mean = statistics.fmean(with_hook) / statistics.fmean(without)
        print(f'  {kind:4} ratio with / without: median {median:.3f}, mean '
              f'{mean:.3f}')


if __name__ == '__main__':
    main()
