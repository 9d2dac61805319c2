"""The policy server: store, inspect and test tenant policies (see docs/policies.md)."""
