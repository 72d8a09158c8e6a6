"""The one word for a whole service that does not answer, raised where it is seen and told by its type: an
outage is no fault of the file at hand, so the work that needs the service waits and no file is marked."""

from __future__ import annotations


class Outage(ConnectionError):
    """Nothing is known of the file at hand. An OSError, so callers that retry on storage errors retry; never
    a FileNotFoundError, so nobody concludes that a file is gone because its service is away."""

    service = "service"


class DatabaseUnavailable(Outage):
    """The database cannot be reached (refused, cut off, shutting down)."""

    service = "database"
