"""Many workers on PostgreSQL: worker registration, worker-level leases, account leases."""
