"""The use cases: what the service does, whoever asks (HTTP API, review pages, DICOM, CLI).

``fractions``       receive a daily MVCT: store it, make the fraction and queue its job
``courses``         create or change a course; ``place_course`` is the one way a course is made
``ingest``          from saved files to a checked series (``save_uploads``, ``files_in_place``)
``stored_series``   the image-series rows and the content-addressed files behind them
``signoff``         a physician's electronic signature of a fraction's decision
``accounts``        users, API keys and sign-in (with ``security`` and ``ratelimit``)
``reports``         weekly set-up error reports over the shift log

Use cases take a :class:`app.context.ServiceContext` (sessions, store, jobs) and plain values;
they know nothing of HTTP, pages or DICOM networking.
"""
