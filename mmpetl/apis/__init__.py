# Copyright (c) mmpetl contributors. All rights reserved.
"""What the tools and Python users call: re-parameterization of
checkpoints, serving several tasks on one backbone, and the tools' shared
options."""
