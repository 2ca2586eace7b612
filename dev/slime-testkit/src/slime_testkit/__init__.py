"""Development-only helpers for slime's tests, benchmarks and CPU examples; not part of any published wheel."""
