"""The demo: a sandbox world put under management (``tgfleet run --demo``), and the seeding
that tests and benchmarks reuse. Not worker code: it drives the services like an operator."""
