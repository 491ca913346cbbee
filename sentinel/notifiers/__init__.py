"""Notifiers: where decisions and kills are told. Delivery goes through the outbox.

A notification is a plain JSON-ready dict (``kind``: ``kill``, ``action``, ``escalation``,
``test``; the rule, the target, the kill record or the decision's evidence, and a one-line
``text``). It is written to the state's outbox before any attempt to send it, and leaves
the outbox only when the receiver accepted it (:mod:`sentinel.notifiers.delivery`).
"""
