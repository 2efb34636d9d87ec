"""aurora-restore's Lambda side: the dispatcher, its step registry, the request and the store.

Importing this package must stay cheap: it is the Lambda's cold start.
"""
