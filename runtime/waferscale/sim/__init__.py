"""waferscale.sim: the cycle-approximate WSE simulator.

Modules:
    waferscale.sim.fabric        the router network: routers, colors, links, queues,
                                 backpressure (:class:`~waferscale.sim.fabric.Fabric`), with a
                                 Python reference and a C++ core (``waferscale._fabric``)
    waferscale.sim.bench_fabric  throughput benchmark of the fabric on GEMV-like traffic

The timing and queueing rules of the fabric are written down in ``docs/fabric-model.md``.
"""
