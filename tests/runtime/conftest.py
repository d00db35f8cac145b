"""A real OCI registry on localhost for the container tests: Debian's ``docker-registry``.

Started once per session in the foreground (``docker-registry serve CONFIG``, storage in a
temporary folder, deletes enabled) and stopped by its pid. Without the command the tests
that use it skip (or fail under ``OREMDA_REQUIRE_ENGINES=1``, as CI sets).
"""

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from oremda_lab.testing import free_port

_READY_WITHIN = 30.0  # seconds for the registry to answer /v2/


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory):
    """``127.0.0.1:PORT`` of a running registry (plain HTTP, which Docker trusts on loopback)."""
    command = shutil.which("docker-registry")
    if command is None:
        message = "the docker-registry command is not installed (apt-get install docker-registry)"
        if os.environ.get("OREMDA_REQUIRE_ENGINES"):
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {folder / 'store'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: {address}}}\n"
    )
    with open(folder / "registry.log", "wb") as log:
        process = subprocess.Popen([command, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + _READY_WITHIN
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"docker-registry did not start: {(folder / 'registry.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.05)  # polling a process we do not control: no event to wait on
        yield address
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
