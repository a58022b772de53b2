"""Unit tests of the pure modules: plain pytest, no pytester, no server, no network.

A package, so its modules are named ``unit.test_*`` and never clash with the end-to-end tests above.
"""
