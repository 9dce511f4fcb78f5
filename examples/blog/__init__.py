"""The blog example: a JSON API, a live feed and a search indexer over pubsub.

It rebuilds the blog of the Nova guide's pub/sub chapter in Python: Starlette
served by uvicorn, SQLite for storage, and cpubsub channels carrying every
change to the WebSocket clients and to the search indexer.  Run it with
``python -m examples.blog``; ``examples/blog/README.md`` lists the endpoints.
"""
