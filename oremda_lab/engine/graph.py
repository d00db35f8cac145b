"""Graph questions the scheduler asks: which nodes run, in which order.

What a change dirties needs no graph walk: a node's cache key includes its upstream
keys, so a new parameter gives the node and everything downstream new keys.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection

from oremda_lab.spec.pipeline import Pipeline


def operator_nodes(pipeline: Pipeline, among: Collection[str] | None = None) -> list[str]:
    """Operator node ids (of ``among``, default all) in topological order (display nodes are not executed)."""
    return [n for n in toposort(pipeline, among) if pipeline.nodes[n].type == "operator"]


def toposort(pipeline: Pipeline, among: Collection[str] | None = None) -> list[str]:
    """Node ids (of ``among``, default all), each after every node it depends on (ties in insertion order).

    Only edges between those nodes count: the runnable part of a partial graph sorts alone.

    Examples
    --------
    >>> from oremda_lab.spec.pipeline import Edge, Endpoint, Node
    >>> p = Pipeline([Node("b"), Node("a")], [Edge(Endpoint("a", "o"), Endpoint("b", "i"))])
    >>> toposort(p)
    ['a', 'b']
    """
    indegree = {n: 0 for n in pipeline.nodes if among is None or n in among}
    children: dict[str, list[str]] = {n: [] for n in indegree}
    for e in pipeline.edges:
        if e.source.id not in indegree or e.target.id not in indegree:
            continue
        indegree[e.target.id] += 1
        children[e.source.id].append(e.target.id)
    ready = deque(n for n, d in indegree.items() if d == 0)
    order = []
    while ready:
        n = ready.popleft()
        order.append(n)
        for c in children[n]:
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    if len(order) != len(indegree):
        raise ValueError("the pipeline has a cycle")
    return order
