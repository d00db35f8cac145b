from oremda_lab.testing import RuntimeContract


class TestLocalRuntime(RuntimeContract):
    runtime = "local"
