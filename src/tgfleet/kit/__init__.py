"""Infrastructure shared by every domain: database, models base, repositories, schemas.

Nothing in ``kit`` imports a domain package (an import-linter contract keeps it so).
"""
