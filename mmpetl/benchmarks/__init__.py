# Copyright (c) mmpetl contributors. All rights reserved.
"""Measurements behind ``tools/benchmarks/``: inference latency and the cost
of a training step."""
