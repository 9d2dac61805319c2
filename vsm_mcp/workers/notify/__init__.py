"""Notifications: per-tenant channels (``channels``), the at-most-once delivery ledger
(``ledger``), one attempt through a sender (``delivery``) and the senders themselves
(``telegram``, ``webhook``, ``smtp``); ``routing`` turns bus events into deliveries."""
