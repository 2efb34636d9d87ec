"""aurora-restore's Lambda side: the dispatcher, its step registry, the step context, the
AWS clients, settings, logging, tracing, the base errors and the state store.

What a refresh is (request, users spec, locks, safety rules) lives in ``refresh``.

Importing this package must stay cheap: it is the Lambda's cold start.
"""
