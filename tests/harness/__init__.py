"""Test harness: starts the real servers (Prosody, ejabberd, Knot) on loopback for the integration tests."""
