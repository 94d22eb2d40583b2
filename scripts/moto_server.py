"""moto's server, applying one request at a time; same arguments as `moto_server`.

moto's threaded server runs concurrent requests against its in-memory tables without a
lock, so two concurrent `UpdateItem ADD`s on one item can both read the old value.
DynamoDB applies writes to an item atomically; serializing moto's requests restores that,
so a duplicate seen in a test is ours, not moto's.
"""
import threading

from moto import server

_one_at_a_time = threading.Lock()
_handle = server.DomainDispatcherApplication.__call__


def _serialized(self, environ, start_response):
    with _one_at_a_time:
        return list(_handle(self, environ, start_response))


server.DomainDispatcherApplication.__call__ = _serialized

if __name__ == "__main__":
    server.main()
