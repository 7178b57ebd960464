"""mvct-guide's pure core: read CT series, register MVCT to planning CT, couch correction.

The planning package (RT Structure Set, RT Plan) is read in :mod:`registration.rtstruct` and
:mod:`registration.rtplan`, checked in :mod:`registration.planning_package`, put on the planning
grid in :mod:`registration.rt_raster`, and what the couch leaves at each structure is in
:mod:`registration.residuals`.

Nothing here imports a web framework, a database or does I/O at import time.
"""

__version__ = "0.1.0"
