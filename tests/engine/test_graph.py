from oremda_lab.engine import graph
from oremda_lab.testing import fault_pipeline


def test_toposort_and_descendants():
    p = fault_pipeline({}, {}, {})
    p.add_node("oremda/fault", id="side")
    order = graph.toposort(p)
    assert order.index("n0") < order.index("n1") < order.index("n2")
    assert graph.descendants(p, "n0") == {"n1", "n2"}
    assert graph.descendants(p, "side") == set()
