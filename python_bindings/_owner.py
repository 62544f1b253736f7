"""Owner: a Python-side object that holds device objects it created (arrays, images, recorders) and
closes them, newest first, when it closes (idempotent; also as a context manager)."""


class Owner:
    def _own(self, obj):
        """Register ``obj`` (anything with ``close()``) to be closed with this owner; returns it."""
        self.__dict__.setdefault("_owned", []).append(obj)
        return obj

    @property
    def closed(self) -> bool:
        return self.__dict__.get("_closed", False)

    def close(self):
        """Close every owned object, newest first (idempotent)."""
        owned = self.__dict__.get("_owned", [])
        while owned:
            owned.pop().close()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
