"""mvct-guide's pure core: read CT series, register MVCT to planning CT, couch correction.

Nothing here imports a web framework, a database or does I/O at import time.
"""

__version__ = "0.1.0"
