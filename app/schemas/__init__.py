"""Public views (pydantic) shared by the JSON API and the review pages' JSON answers."""
