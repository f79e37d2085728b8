"""Auth: users, roles and permissions, password login, JWTs and named API tokens."""
