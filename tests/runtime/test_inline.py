from oremda_lab.testing import RuntimeContract


class TestInlineRuntime(RuntimeContract):
    runtime = "inline"
    isolated = False
