"""The bond's LAG IPsec offload models, one module each (``upstream`` is model ``off``),
behind the :class:`~bonding.lag.common.LagModel` interface; bonding/offload.py chooses one
by ``bond.lag_model``."""
