"""The device lab: a Ray cluster whose worker nodes are the boards of a fleet, each advertising the hardware
profiles it *is*; ``edgeopt lab run`` measures every (variant, profile, runtime) cell on a node of its profile.

- :mod:`edgeopt.lab.resources`: the Ray resources a node advertises (Ray-free).
- :mod:`edgeopt.lab.node`: what runs on the node for one cell (Ray-free: edgeopt's own isolated worker).
- :mod:`edgeopt.lab.cluster`: ``ray start`` for head and join, the nodes' status (imports Ray).
- :mod:`edgeopt.lab.dispatch`: the ``RunConfig.measure`` hook that sends the cells as Ray tasks (imports Ray).

Ray is the optional extra ``edgeopt[lab]``; :func:`edgeopt.lab.resources.require_ray` says how to get it.
"""
