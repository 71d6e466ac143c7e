"""Errors a retry may not hit: the database, the broker or a store briefly away (connection
refused, reset or timed out). Work that hits one goes back to the queue to be retried
(``worker.runner``, ``app.exports``); any other error fails it."""

from __future__ import annotations


def _transient_errors() -> tuple[type[BaseException], ...]:
    import redis
    from kombu.exceptions import OperationalError as BrokerError
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

    stores: tuple[type[BaseException], ...] = ()
    try:  # S3 (s3fs over botocore): its connection errors are not the builtin ConnectionError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        stores = (BotoConnectionError,)
    except ImportError:  # no s3 support installed
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
