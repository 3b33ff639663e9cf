# Copyright (c) mmpetl contributors. All rights reserved.
"""File IO and trust: safe checkpoint loading, checked and atomic outputs,
backbone fingerprints of adapter checkpoints."""
