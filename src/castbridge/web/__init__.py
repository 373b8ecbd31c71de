"""Thin HTTP routes: verify, record, enqueue, answer. No business logic lives here."""
