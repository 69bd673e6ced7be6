"""Process-wide defaults, read when a Couch or Database is created.

``url`` is the server used when none is given: the ``COUCHDB_URL``
environment variable if set, else ``http://127.0.0.1:5984``.  Assign to it to
change the default::

    import corduroy
    corduroy.defaults.url = "http://127.0.0.1:15984"
"""
import os

#: The server URL used by ``Couch()`` and ``Database("name")``.
url: str = os.environ.get("COUCHDB_URL") or "http://127.0.0.1:5984"
