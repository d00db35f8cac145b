from oremda_lab.engine import graph
from oremda_lab.testing import fault_pipeline


def test_toposort_orders_dependencies_first():
    p = fault_pipeline({}, {}, {})
    p.add_node("oremda/fault", id="side")
    p.add_node(display="1D", id="view")
    order = graph.toposort(p)
    assert order.index("n0") < order.index("n1") < order.index("n2")
    assert "view" not in graph.operator_nodes(p) and "side" in graph.operator_nodes(p)
