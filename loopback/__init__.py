"""Processes on 127.0.0.1 for the end-to-end tests and the benchmarks: the example project run
for real, other servers, and Zulip's API-key header.

Its own home so that tests/ and bench/ share it without importing each other
(tests/test_imports.py keeps it so). Not part of the distribution.
"""
