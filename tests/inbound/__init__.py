"""Tests of inbound (two-way) rules that need no running stack."""
