# Copyright (c) mmpetl contributors. All rights reserved.
"""The benchmark suites' library side: running a method over many tasks
(:mod:`.task_suite`) and the papers' protocol of search, pick and seeds
(:mod:`.protocol`)."""
