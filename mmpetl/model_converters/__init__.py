# Copyright (c) mmpetl contributors. All rights reserved.
"""Third-party checkpoint layouts to OpenMMLab keys (the library side of
``tools/model_converters/``)."""
