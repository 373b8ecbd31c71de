"""Tests of the SMS gateway adapters."""
