"""Adapters: the only modules that import third-party clients (docker, kubernetes, slack_sdk).

Each translates its library's errors into sentinel's own (``sentinel.errors``).
"""
