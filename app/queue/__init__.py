"""Running registration jobs: their shared database steps, and the Celery queue for scale-out.

``steps``      the job's transitions (claim, record, lost worker), the same on both paths
``dispatch``   the API side of the queue: publish jobs, wait for them (no Celery worker code)
``celery_app`` the Celery application, its one task and ``mvct-guide worker``

Nothing here imports Celery at package import; the embedded default never loads it.
"""
