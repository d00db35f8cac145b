"""The Docker runtime's checks on Podman's Docker-compatible service (what podman-hpc wraps).

Needs ``podman system service`` at ``OREMDA_PODMAN_HOST`` (or ``CONTAINER_HOST``, else
``/run/podman/podman.sock``); all tests carry the ``podman`` marker. The checks are those
of ``test_docker.py``, run against Podman.
"""

import pytest
from test_docker import ContainerChecks, PipelineChecks

pytestmark = pytest.mark.podman


class TestPodmanRuntime(ContainerChecks):
    runtime = "podman"
    engine_name = "podman"


class TestPodmanPipelines(PipelineChecks):
    runtime = "podman"
    engine_name = "podman"
