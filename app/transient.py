"""Errors a retry may not hit: the database, the broker or a store briefly away (connection
refused, reset or timed out). Work that hits one goes back to the queue to be retried
(``worker.runner``, ``app.exports``); any other error fails it."""

from __future__ import annotations


def _transient_errors() -> tuple[type[BaseException], ...]:
    import redis
    from kombu.exceptions import OperationalError as BrokerError
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

    # The stores' connection errors, which are not the builtin ConnectionError: botocore's (S3,
    # through s3fs) and aiohttp's (GCS, through gcsfs), when they are installed.
    stores: tuple[type[BaseException], ...] = ()
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError

        stores += (BotoConnectionError,)
    except ImportError:
        pass
    try:
        from aiohttp import ClientConnectionError

        stores += (ClientConnectionError,)
    except ImportError:
        pass
    return (
        *stores,
        DisconnectionError,
        OperationalError,
        InterfaceError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        BrokerError,
        ConnectionError,
        TimeoutError,
    )


TRANSIENT = _transient_errors()
