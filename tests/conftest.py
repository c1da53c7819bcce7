"""Test setup: four CPU devices for the pmap tests, set before JAX is imported anywhere."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# The allocator settings of gax's launchers (gax.host), so tests run the steps the way they do.
from gax import host  # pylint: disable=g-import-not-at-top,wrong-import-position

host.tune_malloc()
