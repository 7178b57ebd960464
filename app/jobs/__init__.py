"""Running registration jobs: the job table is the truth, a runner does the work.

``steps``      the job's transitions (claim, record, lost worker), shared by both runners
``embedded``   the default runner: a dispatcher thread and a warm process pool in the service
``pool``       the warm process pool (ITK loaded once per process, planning CT cached)
``task``       the registration itself, as run in a pool process or a Celery worker
``dispatch``   the API side of the Celery queue: publish jobs, wait for them (no worker code)
``celery_app`` the Celery application, its one task and ``mvct-guide worker``
``locks``      cross-process locks (PostgreSQL advisory locks)

Nothing here imports Celery at package import; the embedded default never loads it.
"""
