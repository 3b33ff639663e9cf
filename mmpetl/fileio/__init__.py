# Copyright (c) mmpetl contributors. All rights reserved.
"""File IO and trust, one module per job: :mod:`~mmpetl.fileio.errors`,
:mod:`~mmpetl.fileio.switches` (environment switches),
:mod:`~mmpetl.fileio.safe_load` (checkpoints loaded without running code),
:mod:`~mmpetl.fileio.state_dicts` (state dicts checked before loading),
:mod:`~mmpetl.fileio.configs` (config files, the inputs of a run, configs
in checkpoints read as data), :mod:`~mmpetl.fileio.outputs` (the one output
guard, atomic writes) and :mod:`~mmpetl.fileio.fingerprint` (adapters bound
to their backbone).

This package imports nothing here: the deployment tools load
:mod:`~mmpetl.fileio.outputs` and :mod:`~mmpetl.fileio.configs` without
importing mmpetl (``tools/deployment/deploy_outputs.py``)."""
